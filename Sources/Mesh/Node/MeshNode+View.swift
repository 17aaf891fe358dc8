import Foundation
import Synchronization

/// The topics and services a partial-view node may route without asking the coordinator first:
/// those whose interest was answered (or declared while the coordinator was away). Read on the
/// send path without the actor.
final class ReadyRoutes: Sendable {
    /// Topics and services apart, so a call's lookup builds no key string; and the topic found
    /// last, so a stream of sends on one topic compares a string instead of hashing it.
    private let names = Mutex<(topics: Set<String>, services: Set<String>, lastTopic: String)>(([], [], ""))

    func contains(topic: String) -> Bool {
        names.withLock { names in
            if !topic.isEmpty, topic == names.lastTopic { return true }
            guard names.topics.contains(topic) else { return false }
            names.lastTopic = topic
            return true
        }
    }
    func contains(service: String) -> Bool { names.withLock { $0.services.contains(service) } }
    func insert(topic: String) { _ = names.withLock { $0.topics.insert(topic) } }
    func insert(service: String) { _ = names.withLock { $0.services.insert(service) } }
}

extension MeshNode {
    /// A waiter for the coordinator's answer to an interest.
    struct InterestWaiter {
        let wanted: ViewInterest
        let continuation: CheckedContinuation<Void, Never>
        var timer: Task<Void, Never>?
    }

    /// Before the first send on `topic` (partial view only): asks the coordinator for its
    /// listeners and waits for the answer, so a message to listeners that joined earlier is not lost.
    nonisolated(nonsending) func prepareRoute(topic: String) async throws {
        guard configuration.topologyView == .partial, !readyRoutes.contains(topic: topic) else { return }
        try await need(ViewInterest(topics: [topic]))
        readyRoutes.insert(topic: topic)
    }

    /// Before the first call to `service` (partial view only): the same for its providers.
    nonisolated(nonsending) func prepareRoute(service: String) async throws {
        guard configuration.topologyView == .partial, !readyRoutes.contains(service: service) else { return }
        try await need(ViewInterest(services: [service]))
        readyRoutes.insert(service: service)
    }

    /// Makes sure this node follows `wanted` and, while registered, waits (up to
    /// ``Configuration/connectTimeout``) until the coordinator has answered for it. With the
    /// coordinator away it returns at once: the node routes with what it holds, and re-declares
    /// everything when it registers again. Does nothing with the full view.
    ///
    /// - Throws: ``MeshError/invalidName(_:reason:)`` for a bad name; ``MeshError/requestRefused(reason:)``
    ///   past ``ViewInterest/maximumCount``; ``MeshError/closed``.
    func need(_ wanted: ViewInterest) async throws {
        guard configuration.topologyView == .partial else { return }
        try checkOpen()
        let added = wanted.subtracting(interest)
        if !added.isEmpty {
            try added.validate()
            // Lookups in flight count at the coordinator until answered.
            guard interest.count + peerLookups.inFlight.count + added.count <= ViewInterest.maximumCount else {
                throw MeshError.requestRefused(
                    reason: "this node already follows \(interest.count) topics, services, names and ids, the most a"
                        + " partial view allows is \(ViewInterest.maximumCount); use topologyView: .full for more")
            }
            apply(.interestAdded(added))
        }
        // A standby just asked to route (failover, or the build's race) answers with the view
        // in one round trip: worth the wait, as a registered partial view's answer is.
        guard hasPartialView || session.awaitsRoute, isConnectedToCoordinator, !acknowledgedInterest.contains(wanted) else { return }
        nextWaiterID += 1
        let waiterID = nextWaiterID
        let timeout = configuration.connectTimeout
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let timer = Task {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { self.releaseInterestWaiter(waiterID, timedOut: true) }
            }
            interestWaiters[waiterID] = InterestWaiter(wanted: wanted, continuation: continuation, timer: timer)
        }
    }

    /// An unknown node said hello: ask the coordinator for its record (the hello waits for it).
    nonisolated func lookUp(peer peerID: String) {
        guard configuration.topologyView == .partial, NodeID.isValid(peerID) else { return }
        Task { await self.lookUpPeer(peerID) }
    }

    /// Asks the coordinator about `peerID` now, or once the batch in flight is answered
    /// (``PeerLookups``). A lookup is answered once and never joins ``interest``: hellos under
    /// made-up ids cost nothing lasting, and at any moment no more than the lookups' bounds.
    private func lookUpPeer(_ peerID: String) {
        guard !isClosed else { return }
        switch peerLookups.request(peerID, now: .now, canSend: canLookUp, room: lookupRoom) {
        case .send(let batch):
            sendLookups(batch)
        case .waiting:
            break
        case .refused:
            lookupRefusals.log(
                "refused peer lookups", level: .warning, to: logger,
                "not asking the coordinator about node \(peerID), which said hello: \(PeerLookups.maximumQueued) lookups"
                    + " already wait (a flood of hellos under made-up ids?); its hello is refused after 5 s unless its record arrives")
        }
    }

    /// True while lookups can go out: registered with a partial view the coordinator confirmed.
    private var canLookUp: Bool { hasPartialView && isConnectedToCoordinator }

    /// How many ids one lookup may ask for, so the session stays within ``ViewInterest/maximumCount``.
    private var lookupRoom: Int { max(0, ViewInterest.maximumCount - interest.count) }

    private func sendLookups(_ batch: Set<String>?) {
        guard let batch, !batch.isEmpty else { return }
        // Only the coordinator routed by answers lookups (the others are standbys).
        apply(.sendRequested(ControlMessage(.interest, interest: ViewInterest(ids: batch))), to: primary)
    }

    /// Records that the coordinator answered `answered`, and wakes the waits it satisfies.
    func acknowledge(_ answered: ViewInterest) {
        // Ids are lookups, answered once (``PeerLookups``); only those ``need(_:)`` declared are kept.
        var kept = answered
        kept.ids = answered.ids.intersection(interest.ids)
        acknowledgedInterest.formUnion(kept)
        sendLookups(peerLookups.answered(answered.ids, now: .now, canSend: canLookUp, room: lookupRoom))
        for (waiterID, waiter) in interestWaiters where acknowledgedInterest.contains(waiter.wanted) {
            releaseInterestWaiter(waiterID, timedOut: false)
        }
    }

    /// Wakes every interest wait (the coordinator is gone, or the node closes): they route with what they hold.
    func releaseInterestWaiters() {
        acknowledgedInterest = ViewInterest()
        peerLookups.connectionLost(now: .now)
        for waiterID in interestWaiters.keys { releaseInterestWaiter(waiterID, timedOut: false) }
    }

    private func releaseInterestWaiter(_ waiterID: UInt64, timedOut: Bool) {
        guard let waiter = interestWaiters.removeValue(forKey: waiterID) else { return }
        waiter.timer?.cancel()
        if timedOut {
            logger.warning(
                "the coordinator did not answer which nodes match \(waiter.wanted) within \(formatted(configuration.connectTimeout)); routing with what this node holds")
        }
        waiter.continuation.resume()
    }
}
