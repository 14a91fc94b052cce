import Foundation
import NIOConcurrencyHelpers
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// A callback break that overtakes the reply of a request in flight: the reply's statuses are
/// older than the break, so none of them may be trusted (issue 20, item 1). The proxy holds A's
/// replies back but lets the break through, as a network may deliver it first.
@Suite("AFS mode: a break that arrives while a request is in flight")
struct InFlightBreakTests {
    enum Change: String, CaseIterable, Sendable {
        case link, rename
    }

    @Test("the object a link or rename reply carries is not trusted when a break for it came while the request was out",
          arguments: Change.allCases)
    func breakOvertakesReply(_ change: Change) throws {
        try withCluster { cluster in
            let proxy = try TCPProxy(targetPort: cluster.address.port)
            defer { proxy.stop() }
            let a = PathClient(try cluster.addClient(named: "a", through: proxy))
            let b = PathClient(try cluster.addClient(named: "b"))
            try a.writeFile("/f", "content")
            #expect(try a.stat("/f").mode & 0o777 == 0o644)
            let name = change == .link ? "/g" : "/moved"
            let breaksBefore = a.cacheManager.statistics.snapshot().callbacksReceived

            proxy.holdRepliesOnly()
            let done = NIOLockedValueBox<Result<Void, Error>?>(nil)
            let requester = Thread {
                done.withLockedValue {
                    $0 = Result { change == .link ? try a.link("/f", name) : try a.rename("/f", name) }
                }
            }
            requester.start()
            // The server has answered A (B sees the new name); A has not had the answer.
            #expect(eventually { (try? b.stat(name)) != nil })
            // B's chmod breaks A's promise on the object; the break reaches A ahead of the reply.
            try b.chmod(name, 0o600)
            #expect(eventually { a.cacheManager.statistics.snapshot().callbacksReceived > breaksBefore })
            proxy.release()
            #expect(eventually { done.withLockedValue { $0 != nil } })
            try done.withLockedValue { $0 }?.get()

            // The reply carried the mode from before B's chmod: A must ask again, not trust it.
            #expect(try a.stat(name).mode & 0o777 == 0o600)
        }
    }
}
