import PeachFuzzing

// libFuzzer target over FuzzEntry.frameInput (Sources/PeachFuzzing); see FuzzDriver.

@_cdecl("LLVMFuzzerTestOneInput")
public func peachFuzzFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzEntry.frameInput(FuzzDriver.bytes(data, size))
    return 0
}

@main
struct FrameFuzzer {
    static func main() {
        FuzzDriver.main(fuzzing: { peachFuzzFrame($0, $1) }, replay: FuzzEntry.frameInput)
    }
}
