import Foundation

/// What a process has used so far, summed over its threads: CPU time in nanoseconds (from
/// /proc/PID/task/*/schedstat, exact, where /proc/PID/stat counts 10 ms ticks) and voluntary
/// context switches (each a thread that went to sleep to wait: for a lock, a queue, the
/// network). Threads that ended meanwhile are not counted; the pools measured here live as long
/// as the process.
struct ProcessCounters {
    var cpuNanoseconds: UInt64 = 0
    var voluntarySwitches: UInt64 = 0
    /// Each thread's own, by thread id, so that a difference counts only threads' growth.
    private var threads: [String: (cpu: UInt64, switches: UInt64)] = [:]

    init(cpuNanoseconds: UInt64 = 0, voluntarySwitches: UInt64 = 0) {
        self.cpuNanoseconds = cpuNanoseconds
        self.voluntarySwitches = voluntarySwitches
    }

    static func read(_ pid: pid_t) -> ProcessCounters {
        var counters = ProcessCounters()
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for task in tasks {
            let base = "/proc/\(pid)/task/\(task)"
            var cpu: UInt64 = 0, switches: UInt64 = 0
            if let schedstat = try? String(contentsOfFile: base + "/schedstat", encoding: .utf8),
               let first = schedstat.split(separator: " ").first, let nanoseconds = UInt64(first) {
                cpu = nanoseconds
            }
            if let status = try? String(contentsOfFile: base + "/status", encoding: .utf8),
               let line = status.split(separator: "\n").first(where: { $0.hasPrefix("voluntary_ctxt_switches:") }),
               let count = UInt64(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") {
                switches = count
            }
            counters.threads[task] = (cpu, switches)
            counters.cpuNanoseconds += cpu
            counters.voluntarySwitches += switches
        }
        return counters
    }

    /// What the threads used between two readings: a thread that ended meanwhile counts
    /// nothing, one that started counts all it used.
    static func - (after: ProcessCounters, before: ProcessCounters) -> ProcessCounters {
        var used = ProcessCounters()
        for (task, now) in after.threads {
            let then = before.threads[task] ?? (0, 0)
            used.cpuNanoseconds += now.cpu >= then.cpu ? now.cpu - then.cpu : now.cpu
            used.voluntarySwitches += now.switches >= then.switches ? now.switches - then.switches : now.switches
        }
        return used
    }

    static func += (total: inout ProcessCounters, more: ProcessCounters) {
        total.cpuNanoseconds += more.cpuNanoseconds
        total.voluntarySwitches += more.voluntarySwitches
    }
}

/// CPU seconds a process has used so far, all threads (0 if gone).
func processCPUSeconds(_ pid: pid_t) -> Double {
    Double(ProcessCounters.read(pid).cpuNanoseconds) / 1e9
}
