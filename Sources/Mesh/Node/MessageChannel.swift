import Synchronization

/// A bounded single-consumer channel: the producer waits while it is full.
///
/// It backs ``MeshNode/messages(_:as:)``: when the loop reading the sequence falls behind, the
/// node's delivery waits for it rather than dropping, and the wait travels back to the senders.
final class MessageChannel<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var head = 0
        var consumer: CheckedContinuation<Element?, Never>?
        var producers: [CheckedContinuation<Void, Never>] = []
        var finished = false
    }

    private enum SendStep {
        case delivered(CheckedContinuation<Element?, Never>?)
        case full
        case finished
    }

    private enum NextStep {
        case element(Element, [CheckedContinuation<Void, Never>])
        case end
        case wait
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Adds `element`, waiting while the channel holds ``capacity`` elements.
    ///
    /// - Returns: `false` when the channel was finished (the element is dropped).
    @discardableResult
    nonisolated(nonsending) func send(_ element: Element) async -> Bool {
        while true {
            let step = state.withLock { state -> SendStep in
                if state.finished { return .finished }
                if let consumer = state.consumer {
                    state.consumer = nil
                    return .delivered(consumer)
                }
                guard state.buffer.count - state.head < capacity else { return .full }
                state.buffer.append(element)
                return .delivered(nil)
            }
            switch step {
            case .delivered(let consumer):
                consumer?.resume(returning: element)
                return true
            case .finished:
                return false
            case .full:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let wait = state.withLock { state -> Bool in
                        guard !state.finished, state.buffer.count - state.head >= capacity else { return false }
                        state.producers.append(continuation)
                        return true
                    }
                    if !wait { continuation.resume() }
                }
            }
        }
    }

    /// The next element, or `nil` once finished and drained.
    nonisolated(nonsending) func next() async -> Element? {
        if let (element, producers) = takeOne() {
            for producer in producers { producer.resume() }
            return element
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let step = state.withLock { state -> NextStep in
                    if state.head < state.buffer.count {
                        let element = state.buffer[state.head]
                        state.head += 1
                        return .element(element, compact(&state))
                    }
                    if state.finished { return .end }
                    state.consumer = continuation
                    return .wait
                }
                switch step {
                case .element(let element, let producers):
                    continuation.resume(returning: element)
                    for producer in producers { producer.resume() }
                case .end:
                    continuation.resume(returning: nil)
                case .wait:
                    break
                }
            }
        } onCancel: {
            finish()
        }
    }

    /// True while the consumer is suspended in ``next()`` (for tests).
    var hasWaitingConsumer: Bool { state.withLock { $0.consumer != nil } }

    /// Producers suspended in ``send(_:)`` because the channel is full (for tests).
    var waitingProducerCount: Int { state.withLock { $0.producers.count } }

    /// Ends the channel: the consumer drains what is buffered, then gets `nil`; waiting producers return.
    func finish() {
        let (consumer, producers) = state.withLock { state -> (CheckedContinuation<Element?, Never>?, [CheckedContinuation<Void, Never>]) in
            state.finished = true
            defer {
                state.consumer = nil
                state.producers = []
            }
            return (state.head < state.buffer.count ? nil : state.consumer, state.producers)
        }
        consumer?.resume(returning: nil)
        for producer in producers { producer.resume() }
    }

    private func takeOne() -> (Element, [CheckedContinuation<Void, Never>])? {
        state.withLock { state -> (Element, [CheckedContinuation<Void, Never>])? in
            guard state.head < state.buffer.count else { return nil }
            let element = state.buffer[state.head]
            state.head += 1
            return (element, compact(&state))
        }
    }

    private func compact(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        if state.head == state.buffer.count {
            state.buffer.removeAll(keepingCapacity: true)
            state.head = 0
        } else if state.head > 1024, state.head * 2 > state.buffer.count {
            state.buffer.removeFirst(state.head)
            state.head = 0
        }
        guard !state.producers.isEmpty else { return [] }
        defer { state.producers = [] }
        return state.producers
    }
}
