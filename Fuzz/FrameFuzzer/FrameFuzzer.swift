import Foundation
import PeachFuzzing

// libFuzzer target: FuzzEntry.frameInput (Sources/PeachFuzzing). Built by scripts/fuzz.sh with
// -sanitize=fuzzer,address -DFUZZING; a plain `swift build` makes it a replayer of the files
// given as arguments instead (no sanitizers, no libFuzzer).

@_cdecl("LLVMFuzzerTestOneInput")
public func peachFuzzFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzEntry.frameInput(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

#if FUZZING
// SwiftPM links an executable's `main` to this module's @main, so it hands over to libFuzzer.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

@main
struct FrameFuzzer {
    static func main() {
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { peachFuzzFrame($0, $1) })
        #else
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("cannot read \(path)")
                exit(2)
            }
            FuzzEntry.frameInput(Array(data))
            print("ok \(path)")
        }
        #endif
    }
}
