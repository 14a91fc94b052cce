import Foundation

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

/// The `main` of a fuzz target. Built by scripts/fuzz.sh (-sanitize=fuzzer,address -DFUZZING),
/// it hands over to libFuzzer (SwiftPM links an executable's `main` to its module's @main);
/// in a plain build it replays the files named on the command line instead.
public enum FuzzDriver {
    public static func main(fuzzing callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt,
                            replay entry: ([UInt8]) -> Void) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
        #else
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("cannot read \(path)")
                exit(2)
            }
            entry(Array(data))
            print("ok \(path)")
        }
        exit(0)
        #endif
    }

    /// The bytes libFuzzer hands over.
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    }
}
