import Foundation
import Mesh
import Synchronization

/// Records the messages a node receives into an MCAP file: what `mesh bag record` runs.
///
/// Give it a node of its own (a name no other node uses, so it gets its own copy of each
/// message next to any worker pool). Each message is written with its receive time (the wall
/// clock, in nanoseconds since 1970, as MCAP's `log_time` and `publish_time`), its topic, and the
/// payload bytes exactly as sent. Messages go to one channel per topic, sender and payload
/// encoding: the channel's topic is the mesh topic, its message encoding `json` for values the
/// sender's codec encoded (with a shared JSON Schema `{}`) and `application/octet-stream` for raw
/// `Data` (no schema), and its metadata holds
/// `sender` (the node's name), `sender_id` (its id) and `mesh_encoding` (`codec` or `raw`).
///
/// Messages gather in a chunk in memory; the chunk is written out once it holds
/// ``Options/flushBytes`` or has been open for ``Options/flushInterval``, on a queue of its own,
/// so a recorder killed at any moment leaves a file readable up to its last write.
package final class BagRecorder: Sendable {
    /// What to record and when to stop.
    package struct Options: Sendable {
        /// Topics to record from the start.
        package var topics: [String]
        /// Also record every topic anyone listens to, including topics that appear later. It
        /// finds them in the node's topology, so the node must hold the full view
        /// (`MeshNode.Configuration.topologyView = .full`).
        package var allTopics: Bool
        /// Stop after this long.
        package var duration: Duration?
        /// Stop once the file has reached this many bytes.
        package var maximumSize: UInt64?
        /// The longest a received message waits in memory before it is written.
        package var flushInterval: Duration
        /// The most bytes that wait in memory before they are written.
        package var flushBytes: Int

        package init(
            topics: [String], allTopics: Bool = false, duration: Duration? = nil, maximumSize: UInt64? = nil,
            flushInterval: Duration = .milliseconds(500), flushBytes: Int = 4 << 20
        ) {
            self.topics = topics
            self.allTopics = allTopics
            self.duration = duration
            self.maximumSize = maximumSize
            self.flushInterval = flushInterval
            self.flushBytes = flushBytes
        }
    }

    /// How far the recording is.
    package struct Progress: Sendable, Equatable {
        /// Messages written to the file (or waiting in memory to be).
        package var messages = 0
        /// Their payload bytes.
        package var payloadBytes = 0
        /// The file's size so far, counting what waits in memory.
        package var fileBytes: UInt64 = 0
        /// Topics being recorded.
        package var topics = 0
        /// Seconds since recording started.
        package var seconds = 0.0

        package init() {}

        init(messages: Int, payloadBytes: Int, fileBytes: UInt64, topics: Int, seconds: Double) {
            self.messages = messages
            self.payloadBytes = payloadBytes
            self.fileBytes = fileBytes
            self.topics = topics
            self.seconds = seconds
        }
    }

    /// Why a recording ended.
    package enum StopReason: Sendable, Equatable {
        /// The task running ``run(node:progress:)`` was cancelled (Ctrl-C, SIGTERM).
        case cancelled
        /// ``Options/duration`` passed.
        case duration
        /// ``Options/maximumSize`` was reached.
        case maximumSize
    }

    /// The end of a recording.
    package struct Report: Sendable {
        package var progress: Progress
        package var reason: StopReason
        /// Messages that arrived after recording stopped, not written.
        package var arrivedAfterStop: Int
    }

    private struct ChannelKey: Hashable {
        var topic: String
        var senderID: String
        var encoding: PayloadEncoding
    }

    private struct State {
        var writer: MCAPWriter
        var channels: [ChannelKey: UInt16] = [:]
        var lastKey: ChannelKey?
        var lastChannel: UInt16 = 0
        /// The one Schema record every untyped `json` channel names, once the first one is added.
        var jsonSchema: UInt16?
        /// A Schema record per declared message type, named after it.
        var typedSchemas: [TopicType: UInt16] = [:]
        var messages = 0
        var payloadBytes = 0
        var topics: Set<String> = []
        /// When the open chunk got its first message.
        var chunkOpened: ContinuousClock.Instant?
        var stopped = false
        var reachedMaximumSize = false
        var arrivedAfterStop = 0
        var tooManyChannels = false
    }

    package let path: String
    package let options: Options
    private let file: BagFile
    private let state: Mutex<State>

    /// Creates the file (so a path that cannot be written fails before joining any mesh);
    /// recording starts with ``run(node:progress:)``.
    ///
    /// - Throws: ``MeshBagError/cannotCreate(path:reason:)``.
    package init(path: String, options: Options) throws(MeshBagError) {
        self.path = path
        self.options = options
        file = try BagFile(creating: path, backlogLimit: max(64 << 20, options.flushBytes * 4))
        state = Mutex(State(writer: MCAPWriter(library: "swift-mesh \(MeshDefaults.version) (mesh bag record)")))
        flush(force: true)
    }

    /// Records until a stop condition holds or the task is cancelled, then finishes the file
    /// (summary, footer) and closes it.
    ///
    /// - Parameters:
    ///   - node: the node to record with; it should have a name of its own.
    ///   - progress: called about once a second while recording.
    /// - Returns: what was recorded and why it stopped.
    /// - Throws: ``MeshBagError/writeFailed(path:reason:messages:)`` when the disk refused a write
    ///   (the file keeps what was written before); ``MeshError`` when listening failed, and
    ///   ``MeshBagError/needsFullView`` for ``Options/allTopics`` with a node that does not hold the
    ///   full topology view (the file is then removed).
    package func run(node: MeshNode, progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws -> Report {
        let started = ContinuousClock.now
        var watcher: Task<Void, Never>?
        do {
            if options.allTopics, node.configuration.topologyView != .full {
                // A partial view holds only what the node routes to: it would find no topic at all.
                throw MeshBagError.needsFullView
            }
            for topic in options.topics { try await record(topic, node: node) }
            if options.allTopics { watcher = Task { await self.followTopology(node) } }
        } catch {
            // Nothing was recorded yet: leave no file behind for a recording that never started.
            watcher?.cancel()
            await discard()
            throw error
        }
        var reason = StopReason.cancelled
        var lastReport = started
        while true {
            try? await Task.sleep(for: .milliseconds(50))
            if Task.isCancelled { break }
            flush(force: false)
            if file.failure != nil { break }
            if state.withLock({ $0.reachedMaximumSize }) {
                reason = .maximumSize
                break
            }
            let now = ContinuousClock.now
            if let duration = options.duration, started.duration(to: now) >= duration {
                reason = .duration
                break
            }
            if lastReport.duration(to: now) >= .seconds(1) {
                lastReport = now
                progress(snapshot(since: started))
            }
        }
        watcher?.cancel()
        let final = snapshot(since: started)
        let (failure, late) = await finish()
        if let failure { throw MeshBagError.writeFailed(path: path, reason: failure, messages: final.messages) }
        return Report(progress: final, reason: reason, arrivedAfterStop: late)
    }

    /// The figures so far.
    package func snapshot(since started: ContinuousClock.Instant) -> Progress {
        let elapsed = started.duration(to: .now).components
        return state.withLock { state in
            Progress(
                messages: state.messages, payloadBytes: state.payloadBytes, fileBytes: state.writer.size,
                topics: state.topics.count, seconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
        }
    }

    /// Starts recording `topic`, unless it already is.
    private func record(_ topic: String, node: MeshNode) async throws {
        guard state.withLock({ $0.topics.insert(topic).inserted }) else { return }
        do {
            try await node.listenRaw(topic) { [self] message in await self.write(message, node: node) }
        } catch {
            state.withLock { _ = $0.topics.remove(topic) }
            throw error
        }
    }

    /// With ``Options/allTopics``: records each topic as it appears in the topology.
    private func followTopology(_ node: MeshNode) async {
        while !Task.isCancelled {
            let topology = await node.currentTopology
            for topic in topology.topics.keys.sorted() {
                do {
                    try await record(topic, node: node)
                } catch {
                    if Task.isCancelled { return }
                    node.logger.warning("could not record \"\(topic)\": \(error)")
                }
            }
            do {
                _ = try await node.waitForTopologyChange(from: topology.version, timeout: .seconds(60))
            } catch MeshError.timedOut {
                continue
            } catch {
                return  // cancelled or closed
            }
        }
    }

    /// `{"title":"Pose","description":"swift-mesh message type Pose, fingerprint …"}`: a JSON
    /// Schema that admits any value and says which type the channel carries.
    static func schemaData(for type: TopicType) -> [UInt8] {
        let description = "swift-mesh message type \(type.name)" + (type.fingerprint.map { ", fingerprint \($0)" } ?? "")
        let object = ["title": type.name, "description": description]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(object)) ?? Data("{}".utf8))
    }

    /// The listener: adds one message to the open chunk, writing the chunk out when it is full.
    private func write(_ message: MeshRawMessage, node: MeshNode) async {
        let now = BagRecorder.wallClockNanoseconds()
        // A new channel takes the type its sender declared on the topic (a typed send), if any:
        // looked up only for a message whose channel is not open yet.
        let key = ChannelKey(topic: message.topic, senderID: message.sender.id, encoding: message.encoding)
        var declared: TopicType?
        if message.encoding == .codec, state.withLock({ $0.lastKey != key && $0.channels[key] == nil }) {
            declared = await node.currentTopology.nodes[message.sender.id]?.types[message.topic]
        }
        let flushBytes = options.flushBytes
        let maximumSize = options.maximumSize
        let backlogged = state.withLock { state -> Bool in
            guard !state.stopped else {
                state.arrivedAfterStop += 1
                return false
            }
            let channel: UInt16
            if key == state.lastKey {
                channel = state.lastChannel
            } else if let known = state.channels[key] {
                channel = known
            } else {
                let isJSON = message.encoding == .codec
                var schema: UInt16 = 0
                if isJSON, let declared {
                    // Named after the declared type, so viewers and `mcap info` show it; the JSON
                    // Schema admits any value and carries the fingerprint in its description.
                    schema = state.typedSchemas[declared] ?? state.writer.addSchema(
                        name: declared.name, encoding: "jsonschema", data: BagRecorder.schemaData(for: declared))
                    state.typedSchemas[declared] = schema
                } else if isJSON {
                    // JSON Schema `{}` admits any JSON value: viewers that look for a schema find one.
                    schema = state.jsonSchema ?? state.writer.addSchema(name: "json", encoding: "jsonschema", data: Array("{}".utf8))
                    state.jsonSchema = schema
                }
                guard
                    let added = state.writer.addChannel(
                        topic: message.topic, messageEncoding: isJSON ? "json" : "application/octet-stream",
                        schemaID: schema,
                        metadata: [
                            "sender": message.sender.name, "sender_id": message.sender.id,
                            "mesh_encoding": isJSON ? "codec" : "raw",
                        ])
                else {
                    if !state.tooManyChannels { node.logger.error("more than 65,535 topic/sender pairs; later ones are not recorded") }
                    state.tooManyChannels = true
                    return false
                }
                channel = added
                state.channels[key] = added
            }
            state.lastKey = key
            state.lastChannel = channel
            if state.writer.openChunkBytes == 0 { state.chunkOpened = .now }
            state.writer.append(channelID: channel, logTime: now, publishTime: now, data: message.payload)
            state.messages += 1
            state.payloadBytes += message.payload.count
            if state.writer.openChunkBytes >= flushBytes {
                state.writer.closeChunk()
                file.enqueue(state.writer.takeOutput())
                state.chunkOpened = nil
            }
            if let maximumSize, state.writer.size >= maximumSize {
                state.reachedMaximumSize = true
                state.stopped = true
            }
            return file.isBacklogged
        }
        if backlogged { await file.waitForRoom() }
    }

    /// Writes the open chunk out when it has waited ``Options/flushInterval`` (or at once with `force`).
    private func flush(force: Bool) {
        let interval = options.flushInterval
        state.withLock { state in
            if !force {
                guard let opened = state.chunkOpened, opened.duration(to: .now) >= interval else { return }
            }
            state.writer.closeChunk()
            state.chunkOpened = nil
            let output = state.writer.takeOutput()
            if !output.isEmpty { file.enqueue(output) }
        }
    }

    /// Stops taking messages, ends the file and closes it; returns the write error and the late count.
    private func finish() async -> (String?, Int) {
        let late = state.withLock { state -> Int in
            state.stopped = true
            state.writer.finish()
            file.enqueue(state.writer.takeOutput())
            return state.arrivedAfterStop
        }
        let failure = await file.close()
        return (failure, late)
    }

    /// Closes and removes the file, for a recording that never started (joining the mesh failed).
    package func discard() async {
        state.withLock { $0.stopped = true }
        _ = await file.close()
        unlink(path)
    }

    /// Now, in nanoseconds since 1970.
    static func wallClockNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // A clock set before 1970 reads as 1970, not as a trap.
        return UInt64(clamping: now.tv_sec) * 1_000_000_000 + UInt64(clamping: now.tv_nsec)
    }
}
