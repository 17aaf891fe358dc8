import Foundation
import MeshCrypto
import Synchronization

/// A process's membership in the mesh: it listens and sends on topics.
///
/// Build one with ``buildMeshNode(name:coordinator:authkey:loadBalancing:configuration:)``. The node
/// registers with the coordinator, keeps its own copy of the topology current from the
/// coordinator's deltas, and sends each message straight to the receiving nodes over one
/// reused connection per receiver. Messages from one sender to one receiver arrive in the order
/// sent. Listeners run one at a time in arrival order on the node's delivery task.
public actor MeshNode {
    /// Everything a node can be tuned with; the defaults suit most meshes.
    public struct Configuration: Sendable {
        /// The coordinator's `HOST:PORT`, or several, separated by commas
        /// (`a:6374,b:6374,c:6374`): the node registers with each and routes by the first one
        /// that is up, failing over to the next when it is lost (PROTOCOL.md, "Several coordinators").
        /// `discover` registers with the coordinators that announce ``meshName`` on the LAN.
        /// Defaults to `$MESH_COORDINATOR`, else `auto` (``MeshDefaults/automatic``): the
        /// coordinator on this host when one listens at 127.0.0.1:6374, else those the LAN
        /// announces, else this host's again (one started meanwhile).
        public var coordinator: String
        /// The mesh's name: with `coordinator` set to `discover` (or left to `auto` with no
        /// coordinator on this host), the node registers with the coordinators that announce this
        /// name on the LAN (`mesh-coordinator --announce`).
        /// Defaults to `$MESH_NAME`, else `default`.
        public var meshName: String = MeshDefaults.meshNameFromEnvironment
        /// The shared key, or `nil` for an open mesh.
        public var authkey: String?
        /// Accepts a key that ``MeshKey/estimatedStrength(_:)`` finds easy to guess (a passphrase
        /// of a few words). Off by default (unless `$MESH_ALLOW_WEAK_KEY` is `1`): such a key is
        /// refused when the node starts, with ``MeshError/guessableKey(estimatedBits:minimumBits:)``.
        public var allowWeakKey: Bool = MeshKey.allowWeakFromEnvironment
        /// How each group of same-named listeners shares a topic's messages.
        public var loadBalancing: LoadBalancing
        /// Turns values into payload bytes; every node in a mesh must use the same one.
        public var codec: any MeshCodec
        /// The address the node accepts peer connections on; `0.0.0.0` is every IPv4 interface.
        /// Empty (the default) means the interface the node reaches the coordinator through:
        /// loopback when the coordinator is on loopback, so a local mesh is not open to the network.
        public var listenHost: String
        /// The host peers should dial, when the address the coordinator sees is not reachable
        /// by them (behind NAT, say). `nil` lets the coordinator fill it in.
        public var advertisedHost: String?
        /// The largest payload accepted or sent, in bytes (the frame limit follows from it).
        public var maximumMessageSize: Int
        /// Bytes queued for one receiver before ``whenPeerQueueFull`` applies.
        public var maximumQueuedBytesPerPeer: Int
        /// What `send` does when a receiver's queue is full.
        public var whenPeerQueueFull: FullQueuePolicy
        /// Bytes of received messages waiting for listeners before this node stops reading
        /// (which makes the senders wait in turn), counting the read buffers their payloads hold
        /// alive (payloads are not copied out of them). Service requests have a budget of the same
        /// size of their own, held until answered (see ``serviceLimits``).
        public var maximumInboxBytes: Int
        /// Messages buffered for each ``MeshNode/messages(_:as:)`` sequence.
        public var streamBufferSize: Int
        /// How long building the node, and each later reconnect, may take.
        public var connectTimeout: Duration
        /// How often the node tells the coordinator it is alive.
        public var heartbeatInterval: Duration
        /// Where log lines go; defaults to standard error, labelled with the node's name.
        public var logger: MeshLogger?
        /// What to do when `mesh node kill` asks this node to stop.
        public var onShutdownRequest: ShutdownRequestAction
        /// How to reach peers on the same host. Defaults to `$MESH_SAME_HOST_TRANSPORT`
        /// (`unix` or `tcp`), else TCP (docs/PERFORMANCE.md says why).
        public var sameHostTransport: SameHostTransport
        /// How many service handlers this node runs at once; requests past it wait their turn
        /// (callers taking turns), within ``serviceLimits``.
        public var maximumConcurrentRequests = 64
        /// How many requests and bytes one caller, and all callers together, may have running
        /// and waiting at this node's services; a request past a limit is refused at once with
        /// ``ServiceError/busy(service:provider:reason:)``.
        public var serviceLimits = ServiceLimits()
        /// How much of the topology this node holds; defaults to `$MESH_TOPOLOGY_VIEW` (`full` or
        /// `partial`), else ``TopologyView/partial``.
        ///
        /// ``TopologyView/partial`` (the default) holds this node's own record and the records it
        /// has an interest in: the listeners of the topics it sends on or waits for, the providers
        /// of the services it calls or waits for, the nodes named in ``MeshNode/waitForNodes(named:count:timeout:)``,
        /// and the peers that said hello to it. Each is fetched on first use, then kept current:
        /// what scales to thousands of nodes. So ``MeshNode/currentTopology`` and
        /// ``MeshNode/waitForTopologyChange(from:timeout:)`` show and follow those records only.
        /// Sending, calling and every `waitFor…` work the same in both views.
        ///
        /// ``TopologyView/full`` (`MESH_TOPOLOGY_VIEW=full`, or set it here) holds every node's
        /// record, for code that reads ``MeshNode/currentTopology`` to see the whole mesh (as
        /// `mesh bag record --all` does to find every topic). Joins then cost the mesh O(N²)
        /// records in all (docs/PERFORMANCE.md, W6). To list the mesh once, without holding it,
        /// ask the coordinator: `mesh node list`, `mesh topic list`.
        ///
        /// A coordinator keeps a bounded number of interests for all partial views together
        /// (`maximumInterests`). One that has no room left turns a partial view away; the node
        /// then registers with that coordinator again for the full view, logs a warning, and
        /// holds every record from then on.
        public var topologyView: TopologyView
        /// This node's static key pair, which its id derives from. `nil` (the default) loads the key
        /// file named by ``identityFile``, or makes a fresh pair: a new id every start.
        public var identity: NodeIdentity?
        /// A key file from `mesh keygen --node` for an id that survives restarts; defaults to
        /// `$MESH_IDENTITY_FILE`. Used when ``identity`` is `nil`; a file that cannot be used fails
        /// the build with ``MeshError/invalidIdentity(path:reason:)``.
        public var identityFile: String? = MeshDefaults.identityFileFromEnvironment
        /// The coordinator's static public key (64 hex digits) to insist on in a keyed mesh;
        /// defaults to `$MESH_COORDINATOR_KEY`. `nil` accepts any coordinator that proves the mesh
        /// key, and logs its key once.
        public var coordinatorKey: String? = MeshDefaults.coordinatorKeyFromEnvironment

        public init(
            coordinator: String = MeshDefaults.nodeCoordinatorFromEnvironment,
            authkey: String? = MeshDefaults.authkeyFromEnvironment,
            loadBalancing: LoadBalancing = .roundRobin,
            codec: any MeshCodec = JSONCodec(),
            listenHost: String = "",
            advertisedHost: String? = nil,
            maximumMessageSize: Int = 8 << 20,
            maximumQueuedBytesPerPeer: Int = 32 << 20,
            whenPeerQueueFull: FullQueuePolicy = .wait(.seconds(5)),
            maximumInboxBytes: Int = 64 << 20,
            streamBufferSize: Int = 4096,
            connectTimeout: Duration = .seconds(5),
            heartbeatInterval: Duration = .seconds(1),
            logger: MeshLogger? = nil,
            onShutdownRequest: ShutdownRequestAction = .terminateProcess,
            sameHostTransport: SameHostTransport = SameHostTransport.fromEnvironment,
            topologyView: TopologyView = TopologyView.fromEnvironment
        ) {
            self.coordinator = coordinator
            self.authkey = authkey
            self.loadBalancing = loadBalancing
            self.codec = codec
            self.listenHost = listenHost
            self.advertisedHost = advertisedHost
            self.maximumMessageSize = maximumMessageSize
            self.maximumQueuedBytesPerPeer = maximumQueuedBytesPerPeer
            self.whenPeerQueueFull = whenPeerQueueFull
            self.maximumInboxBytes = maximumInboxBytes
            self.streamBufferSize = streamBufferSize
            self.connectTimeout = connectTimeout
            self.heartbeatInterval = heartbeatInterval
            self.logger = logger
            self.onShutdownRequest = onShutdownRequest
            self.sameHostTransport = sameHostTransport
            self.topologyView = topologyView
        }
    }

    /// How a node reaches peers that run on the same host.
    public enum SameHostTransport: String, Sendable, Equatable {
        /// Each node also accepts peers on an abstract Unix socket, and peers in the same host and
        /// network namespace dial that: faster than loopback TCP.
        case unixSocket = "unix"
        /// Everything goes over TCP.
        case tcp

        /// `$MESH_SAME_HOST_TRANSPORT` (`unix` or `tcp`), else ``tcp``.
        public static var fromEnvironment: SameHostTransport {
            ProcessInfo.processInfo.environment["MESH_SAME_HOST_TRANSPORT"].flatMap(SameHostTransport.init(rawValue:))
                ?? .tcp
        }
    }

    /// The bounds on the service requests a node holds, per caller and in total (docs/PROTOCOL.md
    /// §15.2). A caller is one connection: one calling node. A request counts, with its bytes,
    /// from its arrival until its answer has been written, whether it runs or waits; the node's
    /// total bytes are bounded by ``Configuration/maximumInboxBytes`` and the handlers running at
    /// once by ``Configuration/maximumConcurrentRequests``.
    public struct ServiceLimits: Sendable, Equatable {
        /// Handlers one caller may have running at once (the others wait their turn).
        public var concurrentRequestsPerCaller: Int
        /// Requests one caller may have running or waiting.
        public var requestsPerCaller: Int
        /// Request bytes (whole frames) one caller may have running or waiting. A caller with
        /// nothing held always gets one request in, however large.
        public var bytesPerCaller: Int
        /// Requests all callers together may have running or waiting.
        public var requests: Int

        public init(
            concurrentRequestsPerCaller: Int = 16, requestsPerCaller: Int = 256, bytesPerCaller: Int = 16 << 20,
            requests: Int = 4096
        ) {
            self.concurrentRequestsPerCaller = concurrentRequestsPerCaller
            self.requestsPerCaller = requestsPerCaller
            self.bytesPerCaller = bytesPerCaller
            self.requests = requests
        }
    }

    /// What a node does when the coordinator relays a `mesh node kill`.
    public enum ShutdownRequestAction: Sendable, Equatable {
        /// Close the node (flushing what is queued), then send SIGTERM to this process, so a
        /// program that handles SIGTERM shuts down its own way and one that does not ends.
        case terminateProcess
        /// Only close the node; the process goes on (the node's calls then throw ``MeshError/closed``).
        case closeNode
    }

    /// What `send` does when a receiver has ``Configuration/maximumQueuedBytesPerPeer`` queued.
    ///
    /// Whatever the policy, every dropped message is counted in
    /// ``MeshStatistics/messagesDropped`` and logged with the receiver and topic (at most one
    /// line per receiver per second, with the counts in between).
    public enum FullQueuePolicy: Sendable, Equatable {
        /// Wait up to the duration for room (the calling task suspends; other tasks go on);
        /// then drop this message. The default, with 5 s: a consumer that is slow for a moment
        /// loses nothing, one that has stopped costs each send at most the deadline.
        case wait(Duration)
        /// Drop this message at once: sends never wait (for telemetry where late is useless).
        case dropNewest
        /// Make room by dropping the oldest queued messages for that receiver: sends never wait
        /// and the receiver gets the freshest data (for state that supersedes itself, like poses).
        case dropOldest
    }

    enum ControlEvent: Sendable {
        case opened(Connection)
        /// A control frame's body from the coordinator, decoded by the actor.
        case frame(Connection, [UInt8])
        case closed(Connection, ConnectionError?)
        case peerClosed(String, Connection, ConnectionError?, Connection.Unsent)
        /// A timer of the session with the coordinator at a place in the list fired on the loop at `firedAt` (queued behind the
        /// frames the loop read before it).
        case timer(Int, CoordinatorSession.Timer, due: ContinuousClock.Instant, firedAt: ContinuousClock.Instant)
        /// The first send on a topic: the topology learns that this node sends there.
        case firstSend(String)
        /// Several coordinators: the build's own deadline passed (twice the connect timeout).
        case buildDeadline
    }

    /// This node's id: 16 hex digits, unique in the mesh (derived from its static public key; PROTOCOL.md, "Node ids").
    public nonisolated let id: String
    /// This node's static key pair; in a keyed mesh every handshake proves it.
    public nonisolated let identity: NodeIdentity
    /// Why the configured key file could not be used, which `start` reports.
    nonisolated let identityProblem: MeshError?
    /// The stretched authkey, `nil` for an open mesh (or a key too short, which `start` reports).
    nonisolated let key: SymmetricKey?
    /// This node's name; nodes sharing it form a worker pool.
    public nonisolated let name: String
    public nonisolated let configuration: Configuration
    /// The event loop this node's connections, timers and listeners run on: the process's
    /// default loop, chosen here and passed to every part of the node.
    nonisolated let loop: EventLoop

    package nonisolated let logger: MeshLogger
    let codec: any MeshCodec
    let listeners = ListenerTable()
    let inbox: Inbox
    let receivedCounter = StatisticsCounter()
    let controlEvents: EventQueue<ControlEvent>
    let inboundConnections = ConnectionSet()
    private let admission = HandshakeAdmission()
    let peerDirectory = PeerDirectory()
    private lazy var inboundLink = InboundLink(
        inbox: inbox, counter: receivedCounter, logger: logger, connections: inboundConnections,
        directory: peerDirectory, services: services, loop: loop)
    /// The calls this node waits on, and the handlers of the services it provides.
    nonisolated let calls: PendingCalls
    nonisolated let services: ServiceDispatcher
    var servedServices: Set<String> = []
    nonisolated let router: Router
    /// The topology as the coordinator session holds it.
    var topology: Topology { session.topology }
    var listenedTopics: Set<String> = []
    /// Topics this node declared a send on (typed or latched sends), and the message types it
    /// declared for topics, in its record.
    var declaredSends: Set<String> = []
    var declaredTypes: [String: TopicType] = [:]
    /// Topics whose typed sends are declared and confirmed: checked on every typed send without
    /// a hop to the actor.
    /// By topic, the type recorded for this node's sends (`nil`: declared untyped).
    nonisolated let confirmedSends = Mutex<[String: TopicType?]>([:])
    /// The last value sent on each latched topic, and who has had it.
    var latched: [String: LatchedValue] = [:]
    var latchedBytes = 0
    var isClosed = false
    /// The close in progress or done: a second ``close()`` waits for it and gets its report.
    var closing: Task<CloseReport, Never>?
    /// True once `mesh node kill` (a coordinator's shutdown request) closed this node: a
    /// ``MeshError/closed`` after that is the expected end, not a failure.
    public internal(set) var wasAskedToStop = false
    /// Waits for the topology, indexed by what each waits for (TopologyChanges.swift).
    var topologyWaiters = TopologyWaiters<TopologyWaiter>()
    /// Waits in progress (`waitForListener`, `waitForNodes`, listen confirmations), for tests.
    var pendingWaitCount: Int { topologyWaiters.count }
    var nextWaiterID: UInt64 = 0
    /// Each coordinator of the list, with its session: registering, deltas, heartbeats, liveness
    /// and reconnecting, as a state machine (see MeshNode+Coordinator.swift for the shell that
    /// performs its actions). One element unless several coordinators are configured.
    ///
    /// Stored, and mutated in place (`slots[i].session.handle`): a session mutated through a
    /// getter and setter copied the whole topology on every event (O(nodes) per delta).
    var slots: [CoordinatorSlot]
    /// The place in ``slots`` of the coordinator this node routes by.
    var primary = 0
    /// With nothing configured (`auto`) and no coordinator found on this host or the LAN: what
    /// the LAN search found, added to the error if this host's coordinator never answers either.
    var automaticSearch: String?
    /// The session of the coordinator this node routes by.
    var session: CoordinatorSession { slots[primary].session }
    /// Bumped by every change this node announces of its own record (PROTOCOL.md, "Several coordinators").
    var recordVersion: UInt64 = 0
    var server: Listener?
    var unixServer: Listener?
    private var advertisedAddress: String?
    var tasks: [Task<Void, Never>] = []
    /// The task that handles ``controlEvents``; one of ``tasks``.
    var controlTask: Task<Void, Never>?
    /// The build's wait for its registration.
    var registration: CheckedContinuation<Void, any Error>?
    /// What this node follows with a partial view.
    var interest: ViewInterest { session.interest }
    /// Ids asked about because an unknown peer said hello (partial view; bounded, never in ``interest``).
    var peerLookups = PeerLookups()
    /// Keeps a flood of refused lookups to a few log lines a second.
    var lookupRefusals = RateLimitedLog()
    /// What the coordinator has answered for (partial view).
    var acknowledgedInterest = ViewInterest()
    var interestWaiters: [UInt64: InterestWaiter] = [:]
    /// True while registered with a partial view the coordinator confirmed in its welcome.
    var hasPartialView: Bool { session.hasPartialView }
    nonisolated let readyRoutes = ReadyRoutes()
    /// The coordinator's static key as last logged (keyed mesh).
    var loggedCoordinatorKey: [UInt8]?

    struct TopologyWaiter {
        let isSatisfied: @Sendable (Topology) -> Bool
        /// The topic whose refusal by the coordinator ends this wait with the refusal.
        var refusable: String? = nil
        let continuation: CheckedContinuation<Void, any Error>
        var timer: Task<Void, Never>?
    }

    init(name: String, configuration: Configuration) {
        var identityProblem: MeshError?
        if let given = configuration.identity {
            self.identity = given
        } else if let path = configuration.identityFile, !path.isEmpty {
            do {
                self.identity = try NodeIdentity(contentsOfFile: path)
            } catch {
                self.identity = NodeIdentity()
                identityProblem = error
            }
        } else {
            self.identity = NodeIdentity()
        }
        self.identityProblem = identityProblem
        self.id = identity.id
        self.key = try? MeshKey.stretched(configuration.authkey)
        self.name = name
        self.configuration = configuration
        let loop = EventLoop.shared
        self.loop = loop
        let listed = MeshDefaults.coordinatorList(configuration.coordinator)
        // Nothing listed: kept as written, so resolving it reports the bad address.
        self.slots = MeshNode.slots(
            for: listed.isEmpty ? [configuration.coordinator] : listed, configuration: configuration, nodeID: id, loop: loop)
        self.logger = (configuration.logger ?? MeshLogger(label: name)).labeled(name)
        self.codec = configuration.codec
        self.inbox = Inbox(highWater: configuration.maximumInboxBytes)
        let events = EventQueue<ControlEvent>()
        self.controlEvents = events
        let calls = PendingCalls(logger: logger, loop: loop)
        self.calls = calls
        let serviceLimits = configuration.serviceLimits
        self.services = ServiceDispatcher(
            limits: .init(
                running: configuration.maximumConcurrentRequests, runningPerCaller: serviceLimits.concurrentRequestsPerCaller,
                requests: serviceLimits.requests, requestsPerCaller: serviceLimits.requestsPerCaller,
                bytes: configuration.maximumInboxBytes, bytesPerCaller: serviceLimits.bytesPerCaller),
            maximumMessageSize: configuration.maximumMessageSize, logger: logger)
        self.router = Router(
            nodeID: id, nodeName: name, loadBalancing: configuration.loadBalancing,
            options: MeshNode.connectionOptions(configuration, key: key, identity: identity, purpose: .data), events: events,
            logger: logger, preferUnix: configuration.sameHostTransport == .unixSocket, calls: calls, loop: loop)
        let router = self.router
        peerDirectory.resolve { router.node($0) }
        SharedControlDecoding.nodeOpened()
    }

    /// The topology as this node holds it: with ``TopologyView/partial`` (the default) this node's
    /// own record and the records it routes to, waited for or heard from
    /// (``Configuration/topologyView`` lists them); with ``TopologyView/full`` every node.
    /// Its `version` counts this node's own view's versions.
    public var currentTopology: Topology { topology }

    /// Traffic counters since the node started.
    public var statistics: MeshStatistics {
        var total = receivedCounter.current
        let sent = router.statistics
        total.messagesSent = sent.messagesSent
        total.bytesSent = sent.bytesSent
        total.messagesDropped += sent.messagesDropped
        total.messagesUnrouted = sent.messagesUnrouted
        total.reconnects = sent.reconnects
        total.coordinatorReconnects = sent.coordinatorReconnects
        return total
    }

    /// The executor of the thread that reads this process's connections and runs listeners.
    ///
    /// Code that sends and then waits for an answer in a loop (a control loop asking and
    /// waiting) can run there, with `withTaskExecutorPreference(node.loopExecutor) { ... }` or
    /// `Task(executorPreference: node.loopExecutor) { ... }`: its sends are written in the same
    /// loop iteration and the reply it awaits resumes it without waking another thread. The rules
    /// for listeners apply (see <doc:Threading>): never block or spin there. Code of yours on
    /// the loop is not timed the way listeners are: while it runs, every connection, timer and
    /// heartbeat in the process waits for it.
    public nonisolated var loopExecutor: any TaskExecutor { loop }

    /// The address this node accepts peer connections on.
    public var listenAddress: SocketAddress? { server?.address }

    /// True while the node is registered with a live coordinator (any one of several).
    public var isConnectedToCoordinator: Bool { slots.contains { $0.session.isRegistered } }

    // MARK: Starting

    func start() async throws {
        try validateName(name, kind: "node name")
        if let identityProblem { throw identityProblem }
        if let pin = configuration.coordinatorKey, !pin.isEmpty, NodeID.publicKeyBytes(pin.lowercased()) == nil {
            throw MeshError.invalidIdentity(
                path: "MESH_COORDINATOR_KEY", reason: "the coordinator key must be 64 hex digits (its public key), got \"\(pin.prefix(80))\"")
        }
        if let authkey = configuration.authkey, !authkey.isEmpty {
            try MeshKey.validate(authkey, allowWeak: configuration.allowWeakKey)
        }
        try await findCoordinators()
        for slot in slots.indices {
            let text = slots[slot].session.configuration.coordinator
            slots[slot].address = try await SocketAddress.resolve(text, defaultPort: MeshDefaults.coordinatorPort)
        }
        // The first coordinator picks the interface peers reach this node on.
        guard let address = slots.first?.address else {
            throw MeshError.invalidAddress(configuration.coordinator, reason: "no coordinator address given")
        }
        if let advertised = configuration.advertisedHost, SocketAddress.parse(advertised, defaultPort: 0) == nil {
            // Peers dial numeric addresses only: resolve a name once, here, where failing is clear.
            advertisedAddress = try await SocketAddress.resolve(advertised, defaultPort: 0).host
        } else {
            advertisedAddress = configuration.advertisedHost
        }
        let bindAddress: SocketAddress
        if configuration.listenHost.isEmpty {
            switch address.isLoopback ? nil : Socket.localAddress(toward: address) {
            case .ipv6(let host, _): bindAddress = .ipv6(host: host, port: 0)
            case .ipv4(let host, _): bindAddress = .ipv4(host: host, port: 0)
            case .unix, nil: bindAddress = .ipv4(host: "127.0.0.1", port: 0)
            }
        } else {
            bindAddress = try await SocketAddress.resolve(configuration.listenHost, defaultPort: 0)
        }
        do {
            server = try acceptPeers(on: bindAddress)
        } catch {
            throw MeshError.invalidAddress(bindAddress.description, reason: error.description)
        }
        if configuration.sameHostTransport == .unixSocket {
            let path = NodeRecord.unixAddress(for: id)
            do {
                unixServer = try acceptPeers(on: path)
            } catch {
                // Not fatal: same-host peers then use TCP like everyone else.
                logger.warning("no Unix socket for same-host peers at \(path) (\(error)); they will use TCP")
            }
        }
        if let unknown = TopologyView.unrecognizedEnvironmentValue {
            logger.warning(
                "\(TopologyView.environmentVariable)=\"\(unknown.prefix(80))\" names no topology view (full or partial);"
                    + " this node holds the \(configuration.topologyView.rawValue) view")
        }
        startTasks()
        if configuration.topologyView == .partial {
            peerDirectory.whenUnknown { [self] peerID in lookUp(peer: peerID) }  // undone by shutdown
        }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                registration = continuation
                if slots.count > 1 {
                    // Each session has its deadlines, but the build ends only once the node routes by
                    // one; a route unanswered (its coordinator restarted) must not hold it forever.
                    let events = controlEvents
                    loop.schedule(after: configuration.connectTimeout * 2) { events.push(.buildDeadline) }
                }
                apply(.start)
            }
        } catch {
            await close(within: .zero)
            if let automaticSearch, case .coordinatorUnreachable(let address, let reason) = error as? MeshError {
                throw MeshError.coordinatorUnreachable(
                    address: address, reason: "\(reason); nothing was configured (MESH_COORDINATOR), and \(automaticSearch)")
            }
            throw error
        }
        OpenNodes.shared.insert(self)
    }

    /// A listener whose accepted connections deliver into this node's inbox. The TCP and Unix
    /// listeners share one admission limit and one inbound link.
    private func acceptPeers(on address: SocketAddress) throws(SocketError) -> Listener {
        let options = connectionOptions
        let link = inboundLink
        let connections = inboundConnections
        let admission = self.admission
        let logger = self.logger
        let loop = self.loop
        return try Listener(
            binding: address, loop: loop, admission: admission,
            onError: { logger.error("accepting a peer connection on \(address) failed: \($0)") },
            onAccept: { socket, peer in
                connections.insert(
                    Connection.accept(
                        socket, from: peer, options: options, delegate: link, admission: admission, loop: loop))
            })
    }

    private func startTasks() {
        let inbox = self.inbox
        let listeners = self.listeners
        let logger = self.logger
        let counter = self.receivedCounter
        tasks.append(
            // On the event loop: listeners run where the bytes arrive (see `MeshNode.deliver`).
            Task.detached(executorPreference: loop) {
                await MeshNode.deliver(inbox: inbox, listeners: listeners, logger: logger, counter: counter)
                inbox.deliveryEnded()
            })
        let events = controlEvents
        // Strong references here and below: close() cancels these tasks. (A weak reference
        // would give the node a side table and slow every retain on the send path.)
        let controlTask = Task {
            while !Task.isCancelled {
                let batch = await events.next()
                guard !batch.isEmpty else { return }
                self.handle(batch)
            }
        }
        self.controlTask = controlTask
        tasks.append(controlTask)
    }

    /// Options for the peer connections this node accepts.
    var connectionOptions: Connection.Options {
        var options = MeshNode.connectionOptions(configuration, key: key, identity: identity, purpose: .data)
        options.handshake = .accept(served: [.data: key.map { .key($0) } ?? .open], identity: identity, staticKey: nil)
        return options
    }

    static func connectionOptions(
        _ configuration: Configuration, key: SymmetricKey?, identity: NodeIdentity, purpose: Handshake.Purpose
    ) -> Connection.Options {
        let pinned = purpose == .data ? nil : configuration.coordinatorKey.flatMap { NodeID.publicKeyBytes($0.lowercased()) }
        return Connection.Options(
            handshake: .connect(purpose: purpose, key: key, identity: identity, expectedPeerID: nil, expectedPeerKey: pinned),
            maximumFrameLength: configuration.maximumMessageSize + 64 * 1024,
            maximumPendingBytes: configuration.maximumQueuedBytesPerPeer,
            connectTimeout: configuration.connectTimeout,
            flushChunk: configuration.whenPeerQueueFull == .dropOldest ? 256 * 1024 : nil)
    }

    var record: NodeRecord {
        NodeRecord(
            id: id, name: name, host: advertisedAddress ?? "", port: server?.address.port ?? 0,
            topics: listenedTopics.sorted(), pid: ProcessInfo.processInfo.processIdentifier,
            local: unixServer.map { _ in MeshDefaults.localScope }, services: servedServices.sorted(),
            sends: declaredSends.sorted(), types: declaredTypes, key: identity.publicKeyHex)
    }

    // MARK: Closing (MeshNode+Close.swift)

    func checkOpen() throws(MeshError) {
        if isClosed { throw .closed }
    }
}

/// Builds a node, registers it with the coordinator, and returns once it holds the topology.
///
/// - Parameters:
///   - name: the node's name; nodes that share a name form a worker pool.
///   - coordinator: `HOST:PORT`; defaults to `$MESH_COORDINATOR`, else `127.0.0.1:6374`.
///   - authkey: the mesh's shared key; defaults to `$MESH_AUTHKEY`, else none.
///   - loadBalancing: how messages are shared within each group of same-named listeners.
///   - configuration: everything else; its coordinator, key and balancing are overridden by
///     the arguments above when those are given.
/// - Throws: ``MeshError`` within ``MeshNode/Configuration/connectTimeout``: coordinator
///   unreachable, authentication failed, protocol mismatch, or the name rejected.
public func buildMeshNode(
    name: String, coordinator: String? = nil, authkey: String? = nil, loadBalancing: LoadBalancing? = nil,
    configuration: MeshNode.Configuration = MeshNode.Configuration()
) async throws -> MeshNode {
    var configuration = configuration
    if let coordinator { configuration.coordinator = coordinator }
    if let authkey { configuration.authkey = authkey }
    if let loadBalancing { configuration.loadBalancing = loadBalancing }
    let node = MeshNode(name: name, configuration: configuration)
    try await node.start()
    return node
}

/// Suspends until the task is cancelled: keeps a listener process alive.
///
/// - Throws: `CancellationError` when the task is cancelled.
public func forever() async throws {
    while true { try await Task.sleep(for: .seconds(3600)) }
}
