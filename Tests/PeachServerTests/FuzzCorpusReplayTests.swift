import Foundation
import PeachFuzzing
import PeachProtocol
import PeachServer
import PeachSupport
import PeachTesting
import Testing

/// Replays the committed fuzz corpus (Fuzz/corpus, scripts/make-fuzz-seeds.py) through the fuzz
/// targets' entry points without sanitizers: a trap here is a bug that fuzzing found once.
@Suite("Fuzz corpus replay")
struct FuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus").path

    static func inputs(_ kind: String) throws -> [(name: String, bytes: [UInt8])] {
        let directory = corpus + "/" + kind
        return try FileManager.default.contentsOfDirectory(atPath: directory).sorted().map { name in
            (name, Array(try #require(FileManager.default.contents(atPath: directory + "/" + name))))
        }
    }

    @Test("every frames and requests input through the frame decoder and the message codecs")
    func frames() throws {
        let inputs = try Self.inputs("frames") + Self.inputs("requests")
        #expect(inputs.count >= 20)
        for input in inputs { FuzzEntry.frameInput(input.bytes) }
    }

    @Test("every requests input through the request processor on a real volume store")
    func requests() throws {
        let directory = try TemporaryDirectory(prefix: "peach-fuzz-replay")
        defer { directory.remove() }
        let target = try RequestFuzzTarget(root: directory.path + "/stores")
        defer { target.remove() }
        var outcomes: [(Request, Result<Reply, any Error>)] = []
        target.trace = { outcomes.append(($0, $1)) }
        var answered: [String: [(Request, Result<Reply, any Error>)]] = [:]
        let inputs = try Self.inputs("requests")
        #expect(inputs.count >= 10)
        for input in inputs {
            outcomes = []
            target.run(input.bytes)
            answered[input.name] = outcomes
        }

        // The hostile seeds reach the store and get their error replies.
        func failure(_ seed: String, _ opcode: Opcode) -> StatusCode? {
            guard case .failure(let error)? = answered["seed-" + seed]?.last(where: { $0.0.opcode == opcode })?.1 else { return nil }
            return error as? StatusCode
        }
        #expect(failure("write-offset-2p63", .write) == .fileTooLarge)
        #expect(failure("write-uint64max-2-bytes", .write) == .fileTooLarge)
        #expect(failure("setattr-size-2p63", .storeStatus) == .fileTooLarge)
        #expect(failure("create-blockdev-rdev-2p63", .createFile) == .invalidArgument)
        #expect(failure("storedata-size-uint64max", .storeData) == .fileTooLarge)
        // The tours get through: the FIDs of created files reach the later requests.
        for tour in ["seed-tour-nfs", "seed-tour-afs"] {
            let results = answered[tour] ?? []
            let failed = results.filter { if case .failure = $0.1 { true } else { false } }
            #expect(results.count >= 15 && failed.isEmpty, "\(tour): \(failed.map { "\($0.0.opcode.name): \($0.1)" })")
        }
    }

    @Test("once a crash: Hello with an epoch of 2^63 (found by the request fuzzer) is introduced like any other")
    func helloEpoch() throws {
        let directory = try TemporaryDirectory(prefix: "peach-fuzz-replay")
        defer { directory.remove() }
        let target = try RequestFuzzTarget(root: directory.path + "/stores")
        defer { target.remove() }
        var hellos: [Bool] = []
        target.trace = { request, result in
            if case .hello = request, case .success = result { hellos.append(true) }
            if case .hello = request, case .failure = result { hellos.append(false) }
        }
        for input in try Self.inputs("requests") where input.name.contains("epoch") || input.name.hasPrefix("crash-") {
            target.run(input.bytes)
        }
        #expect(!hellos.isEmpty && hellos.allSatisfy { $0 })
    }
}
