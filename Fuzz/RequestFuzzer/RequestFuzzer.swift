import PeachFuzzing

// libFuzzer target over FuzzEntry.requestInput (Sources/PeachFuzzing); see FuzzDriver.

@_cdecl("LLVMFuzzerTestOneInput")
public func peachFuzzRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzEntry.requestInput(FuzzDriver.bytes(data, size))
    return 0
}

@main
struct RequestFuzzer {
    static func main() {
        FuzzDriver.main(fuzzing: { peachFuzzRequest($0, $1) }, replay: FuzzEntry.requestInput)
    }
}
