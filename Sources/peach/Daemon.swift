import CPeachSystem
import Foundation

/// Background mounts: the parent starts the same command in the foreground as a new session,
/// with its output in a log file and a pipe on descriptor 3 on which the child reports
/// "ready" or one line of error. The parent exits only with that answer.
enum Daemon {
    static let readyDescriptor: Int32 = 3
    static let environmentKey = "PEACH_READY_FD"

    /// Starts the child and waits for its word. Returns nil on success, the error line otherwise.
    static func spawnAndWait(arguments: [String], logPath: String) throws -> String? {
        var pipeFDs: [Int32] = [0, 0]
        // O_CLOEXEC: only the dup2'd descriptor 3 may reach the child, or the pipe never sees EOF.
        guard pipe(&pipeFDs) == 0 else { throw CommandFailure("pipe: \(String(cString: strerror(errno)))") }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw CommandFailure("cannot write the log \(logPath): \(String(cString: strerror(errno)))") }
        let nullFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(logFD)
            close(nullFD)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, nullFD, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], readyDescriptor)
        // The daemon keeps nothing of its caller's but these four.
        posix_spawn_file_actions_addclosefrom_np(&actions, readyDescriptor + 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, PEACH_POSIX_SPAWN_SETSID)

        let executable = "/proc/self/exe"
        // Named peach, not mount.fuse.peach: the daemon gets `peach mount` arguments, not the helper's.
        let argv = (["peach"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environment = ProcessInfo.processInfo.environment
        environment[environmentKey] = String(readyDescriptor)
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        guard spawned == 0 else { throw CommandFailure("cannot start the mount daemon: \(String(cString: strerror(spawned)))") }

        var answer = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(pipeFDs[0], &buffer, buffer.count)
            if n <= 0 { break }
            answer.append(contentsOf: buffer[0..<n])
            if answer.contains(UInt8(ascii: "\n")) { break }
        }
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "ready" { return nil }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return text.isEmpty ? "the mount daemon exited without a word; see \(logPath)" : text
    }

    /// In the child: the descriptor to report on, if started by `spawnAndWait`.
    static var inheritedReadyDescriptor: Int32? {
        ProcessInfo.processInfo.environment[environmentKey].flatMap(Int32.init)
    }

    static func report(_ message: String, on fd: Int32?) {
        guard let fd else { return }
        let line = message + "\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}
