import Foundation
import Glibc
import Mesh
import MeshTooling

#if canImport(Glibc)
import Glibc
#endif

/// Why `mesh launch` could not start or keep the system running (one line; `mesh: ` is added).
package struct LaunchError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Starts everything a ``LaunchPlan`` names, keeps it running, and stops it cleanly: what
/// `mesh launch FILE` does (docs/LAUNCH.md).
///
/// The actor holds the state and makes the decisions; ``ProcessHub`` (one thread) spawns,
/// reads and reaps the children, and ``RestartTracker`` says when to restart.
package actor Launcher {
    /// What the launcher needs from the process around it.
    package struct Options: Sendable {
        /// Colour the line prefixes (standard output is a terminal).
        package var colour: Bool
        /// The environment the children inherit (before MESH_COORDINATOR, MESH_AUTHKEY and `env`).
        package var environment: [String: String]
        /// Searched after `$PATH` for programs: the directory of the `mesh` executable. The
        /// coordinator's program is looked for here first, so it matches the `mesh` in use.
        package var programDirectories: [String]

        package init(colour: Bool, environment: [String: String], programDirectories: [String]) {
            self.colour = colour
            self.environment = environment
            self.programDirectories = programDirectories
        }
    }

    private struct RunEntry {
        var name: String
        var path: String
        var arguments: [String]
        var commandText: String
        var environment: [String: String]
        var workingDirectory: String?
        var count: Int
        var after: [String]
        var delay: Duration
        var stopTimeout: Duration
        var colour: Int?
        var isCoordinator: Bool
        /// Its place in the start order, once its first copy started.
        var startOrder: Int?
    }

    private enum Phase: Equatable {
        case pending
        case starting
        case running(ProcessHub.ChildID, pid: Int32, since: ContinuousClock.Instant)
        case backingOff
        /// Down for good as the policy says: it succeeded (on-failure), or restart: never.
        case finished(ExitStatus)
        case gaveUp(ExitStatus)
        /// Never started: an entry it waits for is down for good.
        case abandoned(String)
        /// Stopped by the launcher.
        case stopped
    }

    private struct Slot {
        let entry: Int
        let copy: Int
        let label: String
        var phase: Phase = .pending
        var tracker: RestartTracker
        /// Seen in the topology at least once.
        var hasJoined = false

        var isActive: Bool {
            switch phase {
            case .starting, .running: return true
            default: return false
            }
        }

        var isDownForGood: Bool {
            switch phase {
            case .finished, .gaveUp, .abandoned: return true
            default: return false
            }
        }

        var succeeded: Bool {
            if case .finished(let status) = phase { return status.isSuccess }
            return false
        }
    }

    private enum StopReason {
        case signal(Int32)
        case done(String)
        case failed(String)
    }

    private let plan: LaunchPlan
    private let options: Options
    private let hub: ProcessHub
    private var entries: [RunEntry] = []
    private var slots: [Slot] = []
    private var slotByChild: [ProcessHub.ChildID: Int] = [:]
    /// Exits reported before their spawn had returned to `startSlot` (see ``handle(_:)``).
    private var earlyExits: [ProcessHub.ChildID: ExitStatus] = [:]
    private var authkey: String?
    private var coordinatorAddress: String?
    private var coordinatorSlot: Int?
    private var inspector: MeshInspector?
    private var topologyFetch: Task<Topology?, Never>?
    /// The tasks starting each entry.
    private var tasks: [Task<Void, Never>] = []
    /// The pending restart of each slot that is backing off.
    private var restarts: [Int: Task<Void, Never>] = [:]
    private var startCounter = 0
    private var stopReason: StopReason?
    private var stopWaiter: CheckedContinuation<StopReason, Never>?
    private var stopping = false
    private var killNow = false
    private var signalCount = 0

    private static let palette = [36, 32, 33, 35, 34, 96, 92, 93, 95, 94]

    package init(plan: LaunchPlan, options: Options) {
        self.plan = plan
        self.options = options
        hub = ProcessHub(colour: options.colour)
    }

    // MARK: Resolving programs and the key (also used by --dry-run)

    /// The absolute path of `program`: a path with a `/` is taken relative to the launch file's
    /// directory; a bare name is looked up on `$PATH`, then in `directories`.
    ///
    /// - Throws: ``LaunchError`` when nothing executable is found.
    package static func resolveProgram(
        _ program: String, planDirectory: String, environment: [String: String], directories: [String],
        preferDirectories: Bool = false
    ) throws -> String {
        if program.contains("/") {
            let path = LaunchPlan.absolute(program, in: planDirectory)
            guard isExecutableFile(path) else { throw LaunchError("\(path) is not an executable file") }
            return path
        }
        let searchPath = (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
        let order = preferDirectories ? directories + searchPath : searchPath + directories
        for directory in order where !directory.isEmpty {
            let path = (directory as NSString).appendingPathComponent(program)
            if isExecutableFile(path) { return path }
        }
        throw LaunchError(
            "program \"\(program)\" not found on PATH or in \(directories.joined(separator: ", "))")
    }

    private static func isExecutableFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
            && access(path, X_OK) == 0
    }

    /// The key the file's `authkey_file` holds, else `$MESH_AUTHKEY`, else none.
    ///
    /// - Throws: ``LaunchError`` when the key file cannot be read, or the key is too short or,
    ///   unless `environment` has `MESH_ALLOW_WEAK_KEY=1`, too easy to guess (every process
    ///   started would refuse it).
    package static func authkey(for plan: LaunchPlan, environment: [String: String]) throws -> String? {
        let key: String?
        let source: String
        if let path = plan.authkeyFile {
            do {
                key = try MeshProcess.readAuthkey(fromFile: path)
            } catch MeshError.invalidName(_, let reason) {
                throw LaunchError("authkey_file \(path): \(reason)")
            }
            source = "authkey_file \(path)"
        } else {
            key = environment["MESH_AUTHKEY"].flatMap { $0.isEmpty ? nil : $0 }
            source = "$MESH_AUTHKEY"
        }
        if let key {
            do {
                try MeshKey.validate(key, allowWeak: environment["MESH_ALLOW_WEAK_KEY"] == "1")
            } catch {
                throw LaunchError("\(source): \(error)")
            }
        }
        return key
    }

    // MARK: Running

    /// Starts the system and runs it until Ctrl-C or SIGTERM, or until the `until_done` entries
    /// (or, without `until_done`, every entry) have finished; then stops everything, last
    /// started first.
    ///
    /// - Throws: ``LaunchError`` (after stopping what it started) when the coordinator could
    ///   not be started or reached, a program is missing, or an `until_done` entry failed.
    package func run() async throws {
        let signals = Task { [weak self] in
            for await signal in MeshProcess.terminationSignals() { await self?.signalled(signal) }
        }
        let events = Task { [weak self, hub] in
            while true {
                let batch = await hub.events.next()
                if batch.isEmpty { return }
                for event in batch { await self?.handle(event) }
            }
        }
        defer {
            signals.cancel()
            events.cancel()
        }
        var failure: LaunchError?
        do {
            try prepare()
            coordinatorAddress = try await setUpCoordinator()
            for index in entries.indices where !entries[index].isCoordinator {
                let entry = index
                tasks.append(Task { await self.startEntry(entry) })
            }
            checkCompletion()
            switch await waitForStopReason() {
            case .signal(let signal):
                hub.say("\(ExitStatus.signalName(signal)): stopping everything (Ctrl-C again kills at once)")
            case .done(let why):
                hub.say("\(why); stopping everything")
            case .failed(let why):
                hub.say("\(why); stopping everything")
                failure = LaunchError(why)
            }
        } catch let error as LaunchError {
            failure = error
        } catch {
            failure = LaunchError("\(error)")
        }
        await stopAll()
        if startCounter > 0 { hub.say(failure == nil ? "all stopped" : "all stopped after a failure") }
        await hub.flush()
        if let failure { throw failure }
    }

    /// Resolves every program and the key before anything starts.
    private func prepare() throws {
        authkey = try Launcher.authkey(for: plan, environment: options.environment)
        for (index, entry) in plan.entries.enumerated() {
            let path: String
            do {
                path = try Launcher.resolveProgram(
                    entry.arguments[0], planDirectory: plan.directory, environment: options.environment,
                    directories: options.programDirectories)
            } catch {
                throw LaunchError("\(plan.file):\(entry.position): entry \"\(entry.name)\": \(error)")
            }
            if let directory = entry.workingDirectory {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
                else {
                    throw LaunchError(
                        "\(plan.file):\(entry.position): entry \"\(entry.name)\": cwd \(directory) is not a directory")
                }
            }
            entries.append(
                RunEntry(
                    name: entry.name, path: path, arguments: entry.arguments, commandText: entry.commandText,
                    environment: entry.environment, workingDirectory: entry.workingDirectory, count: entry.count,
                    after: entry.after, delay: entry.delay, stopTimeout: entry.stopTimeout,
                    colour: options.colour ? Launcher.palette[index % Launcher.palette.count] : nil, isCoordinator: false))
            for copy in 1...entry.count {
                slots.append(
                    Slot(
                        entry: index, copy: copy, label: "\(entry.name)#\(copy)",
                        tracker: RestartTracker(policy: entry.restart, limit: entry.maxRestarts)))
            }
        }
    }

    // MARK: The coordinator

    private func setUpCoordinator() async throws -> String {
        switch plan.coordinator {
        case .start(let host, let port):
            return try await startCoordinator(host: host, port: port)
        case .address(let address):
            do {
                inspector = try await MeshInspector.connect(to: address, authkey: authkey, timeout: .seconds(3))
                hub.say("coordinator \(address) is already running; using it")
                return address
            } catch MeshError.coordinatorUnreachable(_, let reason) {
                guard MeshDefaults.coordinatorList(address).count == 1 else {
                    throw LaunchError("none of the coordinators answers (\(reason)); launch starts a coordinator only for a single address")
                }
                guard let (host, port) = SchemaReader.hostAndPort(address) else { throw LaunchError("bad address \(address)") }
                hub.say("no coordinator answers at \(address) (\(reason)); starting one")
                return try await startCoordinator(host: host, port: port)
            } catch {
                throw LaunchError("the coordinator at \(address): \(error)")
            }
        }
    }

    private func startCoordinator(host: String, port: UInt16) async throws -> String {
        let path = try Launcher.resolveProgram(
            "mesh-coordinator", planDirectory: plan.directory, environment: options.environment,
            directories: options.programDirectories, preferDirectories: true)
        let arguments = ["mesh-coordinator", "--host", host, "--port", String(port)] + plan.coordinatorArguments
        entries.append(
            RunEntry(
                name: "coordinator", path: path, arguments: arguments,
                commandText: arguments.map(ShellWords.quote).joined(separator: " "), environment: [:],
                workingDirectory: nil, count: 1, after: [], delay: .zero, stopTimeout: plan.entries.map(\.stopTimeout).max() ?? LaunchPlan.defaultStopTimeout,
                colour: options.colour ? 90 : nil, isCoordinator: true))
        let slot = slots.count
        slots.append(
            Slot(
                entry: entries.count - 1, copy: 1, label: "coordinator",
                tracker: RestartTracker(policy: .always, limit: LaunchPlan.defaultMaxRestarts)))
        coordinatorSlot = slot
        await startSlot(slot)
        let deadline = ContinuousClock.now + .seconds(15)
        while coordinatorAddress == nil {
            if stopReason != nil { throw LaunchError("stopped while the coordinator was starting") }
            if !slots[slot].isActive {
                throw LaunchError("mesh-coordinator stopped before it listened on \(host):\(port); its output is above")
            }
            if ContinuousClock.now > deadline {
                throw LaunchError("mesh-coordinator did not say where it listens within 15 s")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let address = coordinatorAddress!
        // A restarted coordinator comes back on the same port, where the nodes look for it.
        if let (_, realPort) = SchemaReader.hostAndPort(address) {
            entries[entries.count - 1].arguments =
                ["mesh-coordinator", "--host", host, "--port", String(realPort)] + plan.coordinatorArguments
        }
        hub.say("coordinator listening on \(address)")
        return address
    }

    // MARK: Starting

    private func startEntry(_ index: Int) async {
        let entry = entries[index]
        if !entry.after.isEmpty {
            guard await waitForDependencies(of: index) else { return }
        }
        if entry.delay > .zero {
            try? await Task.sleep(for: entry.delay)
        }
        for slot in slots.indices where slots[slot].entry == index {
            guard !stopping else { return }
            await startSlot(slot)
        }
    }

    private func environment(for entry: RunEntry) -> [String: String] {
        var environment = options.environment
        if let coordinatorAddress { environment["MESH_COORDINATOR"] = coordinatorAddress }
        if let authkey {
            environment["MESH_AUTHKEY"] = authkey
        } else {
            environment["MESH_AUTHKEY"] = nil
        }
        for (name, value) in entry.environment { environment[name] = value }
        return environment
    }

    private func startSlot(_ slot: Int) async {
        guard !stopping else { return }
        let entry = entries[slots[slot].entry]
        if entry.startOrder == nil {
            entries[slots[slot].entry].startOrder = startCounter
            startCounter += 1
        }
        slots[slot].phase = .starting
        let spec = ProcessHub.Spec(
            path: entry.path, arguments: entry.arguments, environment: environment(for: entry),
            workingDirectory: entry.workingDirectory, label: slots[slot].label, colour: entry.colour,
            watchOutput: entry.isCoordinator, announce: entry.commandText)
        switch await hub.spawn(spec) {
        case .success(let (id, pid)):
            slots[slot].phase = .running(id, pid: pid, since: .now)
            if let status = earlyExits.removeValue(forKey: id) {
                // It exited while this actor waited for the spawn's answer (the event came first).
                exited(slot: slot, status: status, ranFor: .zero)
                return
            }
            slotByChild[id] = slot
            if killNow { hub.signal(id, SIGKILL) }
        case .failure(let error):
            hub.say("could not start \(slots[slot].label): \(entry.path): \(error)")
            exited(slot: slot, status: .exited(127), ranFor: .zero)
        }
    }

    // MARK: Exits and restarts

    private func handle(_ event: ProcessHub.Event) {
        switch event {
        case .line(_, let text):
            let marker = "mesh-coordinator listening on "
            if coordinatorAddress == nil, let range = text.range(of: marker) {
                coordinatorAddress = String(text[range.upperBound...]).trimmingCharacters(in: .whitespaces)
            }
        case .exited(let id, _, let status):
            guard let slot = slotByChild.removeValue(forKey: id) else {
                // A child that exits at once can be reported before `startSlot`, suspended on the
                // spawn, has recorded it: keep the exit for it.
                earlyExits[id] = status
                return
            }
            guard case .running(_, _, let since) = slots[slot].phase else { return }
            exited(slot: slot, status: status, ranFor: since.duration(to: .now))
        }
    }

    private func exited(slot: Int, status: ExitStatus, ranFor: Duration) {
        let label = slots[slot].label
        if stopping {
            slots[slot].phase = .stopped
            hub.say("stopped \(label) (\(status))")
            return
        }
        let ran = "after \(Launcher.format(ranFor))"
        if slot == coordinatorSlot && coordinatorAddress == nil {
            // It never listened (a port in use, a bad address): restarting would not help.
            slots[slot].phase = .finished(status)
            hub.say("\(label) exited (\(status)) \(ran) without listening")
            return
        }
        switch slots[slot].tracker.exited(status, ranFor: ranFor) {
        case .restart(let delay):
            slots[slot].phase = .backingOff
            hub.say("\(label) exited (\(status)) \(ran); restarting in \(Launcher.format(delay))")
            restarts[slot] = Task {
                try? await Task.sleep(for: delay)
                await self.restart(slot)
            }
        case .stayDown:
            slots[slot].phase = .finished(status)
            let policy = slots[slot].tracker.policy
            let why = status.isSuccess ? "done" : "not restarting (restart: \(policy.rawValue))"
            hub.say("\(label) exited (\(status)) \(ran); \(why)")
        case .giveUp:
            slots[slot].phase = .gaveUp(status)
            hub.say(
                "\(label) exited (\(status)) \(ran); giving up after \(slots[slot].tracker.restartsInARow) restarts in a row (max_restarts)")
        }
        checkCompletion()
    }

    private func restart(_ slot: Int) async {
        restarts[slot] = nil
        guard !stopping, slots[slot].phase == .backingOff else { return }
        await startSlot(slot)
    }

    /// Stops the launch once the `until_done` entries, or without them every entry, are down for good.
    private func checkCompletion() {
        guard stopReason == nil else { return }
        let watched: [Slot]
        if plan.untilDone.isEmpty {
            watched = slots.filter { !entries[$0.entry].isCoordinator }
            guard watched.allSatisfy(\.isDownForGood) else { return }
        } else {
            watched = slots.filter { plan.untilDone.contains(entries[$0.entry].name) }
        }
        if let failed = watched.first(where: { $0.isDownForGood && !$0.succeeded }) {
            switch failed.phase {
            case .finished(let status), .gaveUp(let status):
                requestStop(.failed("\(failed.label) failed (\(status))"))
            case .abandoned(let why):
                requestStop(.failed("\(failed.label) never started: \(why)"))
            default:
                break
            }
            return
        }
        guard watched.allSatisfy(\.succeeded) else { return }
        let names = plan.untilDone.isEmpty ? "every entry" : plan.untilDone.joined(separator: " and ")
        requestStop(.done("\(names) finished"))
    }

    // MARK: after: waiting on the topology

    private enum DependencyState {
        case ready
        case waiting(String)
        case impossible(String)
    }

    private func waitForDependencies(of index: Int) async -> Bool {
        var lastNote = ContinuousClock.now
        while !stopping {
            switch await dependencyState(of: index) {
            case .ready:
                return true
            case .impossible(let why):
                hub.say("\(entries[index].name) will not start: \(why)")
                for slot in slots.indices where slots[slot].entry == index { slots[slot].phase = .abandoned(why) }
                checkCompletion()
                return false
            case .waiting(let what):
                if lastNote.duration(to: .now) >= .seconds(10) {
                    hub.say("\(entries[index].name) is still waiting: \(what)")
                    lastNote = .now
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    private func dependencyState(of index: Int) async -> DependencyState {
        let names = Set(entries[index].after)
        let watched = slots.indices.filter { names.contains(entries[slots[$0].entry].name) }
        for slot in watched where slots[slot].isDownForGood && !slots[slot].hasJoined {
            return .impossible("\(slots[slot].label) is down for good and never joined the mesh")
        }
        guard let topology = await currentTopology() else { return .waiting("the coordinator does not answer") }
        let nodePIDs = topology.nodes.values.compactMap(\.pid)
        var joined = 0
        for slot in watched {
            if case .running(_, let pid, _) = slots[slot].phase,
                nodePIDs.contains(where: { Launcher.isProcess($0, orDescendantOf: pid) })
            {
                slots[slot].hasJoined = true
                joined += 1
            } else if slots[slot].isDownForGood && slots[slot].hasJoined {
                joined += 1
            }
        }
        if joined == watched.count { return .ready }
        return .waiting("\(joined) of \(watched.count) process(es) of \(entries[index].after.joined(separator: ", ")) joined the mesh")
    }

    /// One topology read at a time, over one inspector connection (reopened after a failure).
    private func currentTopology() async -> Topology? {
        if let fetch = topologyFetch { return await fetch.value }
        let fetch = Task { await self.fetchTopology() }
        topologyFetch = fetch
        let topology = await fetch.value
        topologyFetch = nil
        return topology
    }

    private func fetchTopology() async -> Topology? {
        guard let address = coordinatorAddress else { return nil }
        if inspector == nil {
            inspector = try? await MeshInspector.connect(to: address, authkey: authkey, timeout: .seconds(3))
        }
        guard let inspector else { return nil }
        do {
            return try await inspector.topology(timeout: .seconds(3))
        } catch {
            await inspector.close()
            self.inspector = nil
            return nil
        }
    }

    /// Whether `candidate` is `pid` or one of its descendants (a node started through a shell
    /// or a wrapper), by the parent links in /proc.
    static func isProcess(_ candidate: Int32, orDescendantOf pid: Int32) -> Bool {
        var current = candidate
        for _ in 0..<8 {
            if current == pid { return true }
            guard let stat = try? String(contentsOfFile: "/proc/\(current)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = Int32(fields[1]), parent > 1 else { return false }
            current = parent
        }
        return false
    }

    // MARK: Stopping

    private func signalled(_ signal: Int32) {
        signalCount += 1
        if stopReason == nil {
            requestStop(.signal(signal))
        } else if !killNow {
            killNow = true
            hub.say("\(ExitStatus.signalName(signal)) again: killing everything now")
            for slot in slots.indices {
                if case .running(let id, _, _) = slots[slot].phase { hub.signal(id, SIGKILL) }
            }
        }
    }

    private func requestStop(_ reason: StopReason) {
        guard stopReason == nil else { return }
        stopReason = reason
        stopWaiter?.resume(returning: reason)
        stopWaiter = nil
    }

    private func waitForStopReason() async -> StopReason {
        if let stopReason { return stopReason }
        return await withCheckedContinuation { stopWaiter = $0 }
    }

    /// Stops every running copy: entries in reverse start order (the copies of one entry
    /// together), SIGTERM first, SIGKILL after the entry's `stop_timeout`; the coordinator last.
    private func stopAll() async {
        stopping = true
        for task in tasks + restarts.values { task.cancel() }
        let order = entries.indices.filter { entries[$0].startOrder != nil }
            .sorted { entries[$0].startOrder! > entries[$1].startOrder! }
        for index in order {
            let active = slots.indices.filter { slots[$0].entry == index && slots[$0].isActive }
            guard !active.isEmpty, !killNow else { continue }
            let entry = entries[index]
            hub.say("stopping \(active.map { slots[$0].label }.joined(separator: ", "))")
            for slot in active {
                if case .running(let id, _, _) = slots[slot].phase { hub.signal(id, SIGTERM) }
            }
            await waitUntil(ContinuousClock.now + entry.stopTimeout) {
                !$0.slots.contains { $0.entry == index && $0.isActive }
            }
            let left = slots.indices.filter { slots[$0].entry == index && slots[$0].isActive }
            if !left.isEmpty && !killNow {
                hub.say(
                    "\(left.map { slots[$0].label }.joined(separator: ", ")) did not stop within \(Launcher.format(entry.stopTimeout)); sending SIGKILL")
                for slot in left {
                    if case .running(let id, _, _) = slots[slot].phase { hub.signal(id, SIGKILL) }
                }
                await waitUntil(ContinuousClock.now + .seconds(5)) {
                    !$0.slots.contains { $0.entry == index && $0.isActive }
                }
            }
        }
        // Whatever is left (a copy that started while stopping, or after a second Ctrl-C) goes at once.
        await waitUntil(ContinuousClock.now + .seconds(10)) { launcher in
            for slot in launcher.slots.indices {
                if case .running(let id, _, _) = launcher.slots[slot].phase { launcher.hub.signal(id, SIGKILL) }
            }
            return !launcher.slots.contains(where: \.isActive)
        }
        if let inspector { await inspector.close() }
        inspector = nil
    }

    /// Checks `condition` every 20 ms until it holds or `deadline` passes (or a second signal).
    private func waitUntil(_ deadline: ContinuousClock.Instant, _ condition: (isolated Launcher) -> Bool) async {
        var lastKill = false
        while !condition(self) && ContinuousClock.now < deadline {
            if killNow && !lastKill {
                lastKill = true
                for slot in slots.indices {
                    if case .running(let id, _, _) = slots[slot].phase { hub.signal(id, SIGKILL) }
                }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// `0.5 s`, `12 s`, `3m07s`.
    package static func format(_ duration: Duration) -> String {
        let value = seconds(duration)
        if value < 1 { return "\(Int((value * 1000).rounded())) ms" }
        if value < 10 { return String(format: "%.1f s", value) }
        if value < 60 { return "\(Int(value)) s" }
        return String(format: "%dm%02ds", Int(value) / 60, Int(value) % 60)
    }
}
