import Foundation
import Synchronization

extension MeshNode {
    /// What a node's ``MeshNode/close()`` could not finish: messages its receivers did not confirm,
    /// received messages its listeners did not get to, and service calls left unfinished.
    ///
    /// A close that finished everything is ``isComplete``. Thrown by ``MeshNode/closeConfirmed()``
    /// when it is not; its description is one line naming what was lost.
    public struct CloseReport: Error, Sendable, Equatable, CustomStringConvertible {
        /// Messages sent on connections open at the close that their receivers confirmed taking.
        public var messagesConfirmed = 0
        /// Messages sent on connections open at the close that their receivers did not confirm:
        /// not written in time, not taken, or the receiver did not answer within the bound (a
        /// receiver that does not know the confirmation, docs/PROTOCOL.md §8.3).
        public var messagesUnconfirmed = 0
        /// One entry per receiver that did not confirm everything: `name (id) confirmed 3 of 5`.
        public var unconfirmedReceivers: [String] = []
        /// Messages this node received that no listener had finished with when the bound passed,
        /// and messages that arrived after the close began; they were dropped and logged.
        public var messagesUnhandled = 0
        /// Service requests still in a handler, or waiting for one, when the bound passed.
        public var requestsUnfinished = 0

        public init() {}

        /// True when every sent message was confirmed and everything received was handled.
        public var isComplete: Bool { messagesUnconfirmed == 0 && messagesUnhandled == 0 && requestsUnfinished == 0 }

        public var description: String {
            var parts: [String] = []
            if messagesUnconfirmed > 0 {
                parts.append(
                    "\(messagesUnconfirmed) of \(messagesConfirmed + messagesUnconfirmed) message(s) sent were not confirmed by their receivers (\(unconfirmedReceivers.joined(separator: "; ")))"
                )
            }
            if messagesUnhandled > 0 {
                parts.append("\(messagesUnhandled) received message(s) were not handled by a listener before the close bound")
            }
            if requestsUnfinished > 0 {
                parts.append("\(requestsUnfinished) service request(s) were not finished before the close bound")
            }
            return parts.isEmpty ? "everything sent was confirmed and everything received handled" : parts.joined(separator: "; ")
        }
    }

    /// How long each step of a close may take: finishing what arrived, then sending and confirming.
    public static let closeBound = Duration.seconds(2)

    /// Leaves the mesh gracefully, and says what it could not finish.
    ///
    /// In order, like a service group's graceful shutdown: the node tells the coordinator it is
    /// leaving, stops accepting connections and taking new messages and requests; hands every message it had
    /// received to its listeners and lets running service handlers finish (their replies go out),
    /// for up to ``closeBound``; then writes what it queued for each receiver and asks each to
    /// confirm how many messages it took (docs/PROTOCOL.md §8.3), for up to ``closeBound`` again;
    /// then closes every connection and ends every ``messages(_:as:)`` sequence. What is left
    /// past a bound is counted in the report and logged, never dropped silently. Later calls
    /// throw ``MeshError/closed``; a second `close` waits for the first and returns its report.
    ///
    /// - Returns: what could not be finished; ``CloseReport/isComplete`` when nothing.
    @discardableResult
    public func close() async -> CloseReport {
        await close(within: MeshNode.closeBound)
    }

    /// ``close()``, throwing its report unless every sent message was confirmed and everything
    /// received was handled: for a program that sends and exits, so a loss ends it with one line.
    ///
    /// - Throws: the ``CloseReport`` when it is not ``CloseReport/isComplete``.
    public func closeConfirmed() async throws(CloseReport) {
        let report = await close()
        if !report.isComplete { throw report }
    }

    @discardableResult
    func close(within bound: Duration) async -> CloseReport {
        if let closing { return await closing.value }
        isClosed = true
        SharedControlDecoding.nodeClosed()
        let task = Task { await self.shutdown(bound: bound) }
        closing = task
        return await task.value
    }

    private func shutdown(bound: Duration) async -> CloseReport {
        var report = CloseReport()
        OpenNodes.shared.remove(self)
        // A node others route to leaves first, so they stop sending here while it drains. One
        // nobody routes to (a sender) leaves last: its receivers may still need its record to
        // accept its connection (a partial view looks a sender up when it says hello).
        let leaveFirst = !listenedTopics.isEmpty || !servedServices.isEmpty
        var closing = leaveFirst ? closeSession(flushingUntil: .now + bound + bound) : []
        if leaveFirst { stopHeartbeatPumps() }
        peerDirectory.whenUnknown(nil)

        // 1. Take nothing new: no connections, no messages into the inbox, no requests. Open
        // connections are still read, so what arrives now is counted as refused and a sender
        // that closes (or sees this node leave) is told exactly what was taken.
        server?.close()
        server = nil
        unixServer?.close()
        unixServer = nil
        let inbound = inboundConnections.removeAll()
        inbox.close()

        // 2. Finish what arrived: listeners get every queued message, handlers return and their
        // replies are queued, all within the bound.
        let drainDeadline = ContinuousClock.now + bound
        let delivered = await inbox.waitUntilDelivered(deadline: drainDeadline, loop: loop)
        report.requestsUnfinished = await services.drain(until: drainDeadline, loop: loop)
        let abandoned = delivered ? 0 : inbox.abandon()
        if abandoned > 0 {
            logger.warning(
                "closing: \(abandoned) received message(s) were not handled by a listener within \(formatted(bound)); dropped")
        }
        if report.requestsUnfinished > 0 {
            logger.warning(
                "closing: \(report.requestsUnfinished) service request(s) were not finished within \(formatted(bound)); their callers get no answer")
        }
        services.close()
        calls.close()

        // 3. Flush: what is queued goes out, each receiver confirms what it took, replies are written.
        let sendDeadline = ContinuousClock.now + bound
        let peers = router.close()
        for (_, connection) in peers {
            connection.closeConfirming(deadline: sendDeadline)
            closing.append(connection)
        }
        for connection in inbound {
            // Its sender closes it once it sees this node leave, after asking what was taken.
            connection.closeWhenPeerCloses(deadline: sendDeadline)
            closing.append(connection)
        }
        for connection in closing { await connection.waitUntilClosed() }
        let refused = inbox.refusedCount
        if refused > 0 {
            logger.warning("closing: \(refused) message(s) arrived after the close began; not handled (their senders are told when they close)")
        }
        report.messagesUnhandled = abandoned + refused
        if !leaveFirst {
            stopHeartbeatPumps()
            for connection in closeSession(flushingUntil: .now + bound) { await connection.waitUntilClosed() }
        }
        for (peerID, connection) in peers.sorted(by: { $0.peerID < $1.peerID }) {
            guard let (announced, confirmed) = connection.confirmation, announced > 0 else { continue }
            let taken = min(confirmed ?? 0, announced)
            report.messagesConfirmed += taken
            guard taken < announced else { continue }
            report.messagesUnconfirmed += announced - taken
            let who = peerDirectory.node(peerID).map { "\($0.name) (\(peerID))" } ?? peerID
            report.unconfirmedReceivers.append(
                confirmed == nil ? "\(who) did not confirm \(announced)" : "\(who) confirmed \(taken) of \(announced)")
        }
        if report.messagesUnconfirmed > 0 {
            // Info, not a warning: the caller has the report and says it its own way (the mesh
            // tool on one line); a program that ignores the report still sees this by default.
            logger.info("closing: \(report.description)")
        }

        // A peer connection whose flush timed out just now has reported what it could not send.
        // Ending the queue lets the control task handle what is left in it and stop; waiting for
        // it counts those drops before close returns, so statistics read after close are complete.
        controlEvents.finish()
        await controlTask?.value
        listeners.removeAll()
        for task in tasks { task.cancel() }
        tasks.removeAll()
        // Last: the report above names receivers through it.
        peerDirectory.clear()
        for (_, waiter) in topologyWaiters.all {
            waiter.timer?.cancel()
            waiter.continuation.resume(throwing: MeshError.closed)
        }
        topologyWaiters.removeAll()
        return report
    }
}

/// The nodes of this process that are open, so ``MeshProcess/run(help:_:)`` can close the ones
/// a program left open, gracefully, before it exits.
final class OpenNodes: Sendable {
    static let shared = OpenNodes()

    private struct Entry: Sendable {
        weak var node: MeshNode?
    }

    private let nodes = Mutex<[ObjectIdentifier: Entry]>([:])

    func insert(_ node: MeshNode) { nodes.withLock { $0[ObjectIdentifier(node)] = Entry(node: node) } }
    func remove(_ node: MeshNode) { _ = nodes.withLock { $0.removeValue(forKey: ObjectIdentifier(node)) } }
    var all: [MeshNode] { nodes.withLock { $0.values.compactMap(\.node) } }
}

extension MeshProcess {
    /// Closes every node of this process that is still open, all at once, each as
    /// ``MeshNode/close()`` does; ``run(help:_:)`` calls it when the program's body ends.
    ///
    /// - Returns: the reports of the closes that left something unfinished.
    public static func closeOpenNodes() async -> [MeshNode.CloseReport] {
        await withTaskGroup(of: MeshNode.CloseReport.self) { group in
            for node in OpenNodes.shared.all { group.addTask { await node.close() } }
            var incomplete: [MeshNode.CloseReport] = []
            for await report in group where !report.isComplete { incomplete.append(report) }
            return incomplete
        }
    }
}
