import Foundation

/// Runs a bash command line and returns its exit status and output (stdout and stderr together).
public struct ShellResult: Sendable {
    public var status: Int32
    public var output: String
}

@discardableResult
public func shell(_ command: String, in directory: String? = nil, environment: [String: String] = [:]) throws -> ShellResult {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw ProcessError(description: "pipe failed") }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    let child: ChildProcess
    do {
        child = try ChildProcess(["/bin/bash", "-c", command], directory: directory, environment: environment, outputFD: fds[1])
    } catch {
        close(fds[0])
        close(fds[1])
        throw error
    }
    close(fds[1])
    var output = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fds[0], &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        output.append(contentsOf: buffer[0..<n])
    }
    close(fds[0])
    return ShellResult(status: child.wait(), output: String(decoding: output, as: UTF8.self))
}
