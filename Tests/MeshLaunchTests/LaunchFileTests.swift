import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshLaunch

/// The launch file reader (YAML subset and JSON), its schema, the command splitter and the
/// restart policy: pure values, no processes.
@Suite("Launch file")
struct LaunchFileTests {
    func parse(_ text: String, environment: [String: String] = [:]) throws -> LaunchPlan {
        try LaunchPlan.parse(text, file: "/work/demo/launch.yaml", environment: environment)
    }

    /// The error a file gives, which must name the file, a line and a column.
    func failure(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> LaunchFileError? {
        do {
            _ = try parse(text)
            Issue.record("no error for:\n\(text)", sourceLocation: sourceLocation)
            return nil
        } catch let error as LaunchFileError {
            return error
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    func expectFailure(
        _ text: String, line: Int, column: Int, mentioning needle: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error = failure(text, sourceLocation: sourceLocation) else { return }
        #expect(error.position == TextPosition(line: line, column: column), "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(needle), "\"\(needle)\" not in: \(error)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix("/work/demo/launch.yaml:\(line):\(column): "), "\(error)", sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
    }

    // MARK: The issue's example, YAML and JSON

    static let example = """
        coordinator: start             # start one
        authkey_file: mesh.key         # optional
        nodes:                         # entry name -> settings, started in file order
          worker:
            command: demo-worker       # a program and its arguments
            count: 3                   # three copies: a worker pool
            restart: on-failure
          dispatcher:
            command: demo-worker --dispatch 12 --workers 3
            after: [worker]            # start once every copy of `worker` has joined the mesh
            restart: never
        """

    @Test("the issue's example reads as written")
    func issueExample() throws {
        let plan = try parse(LaunchFileTests.example)
        #expect(plan.coordinator == .start(host: "127.0.0.1", port: 6374))
        #expect(plan.authkeyFile == "/work/demo/mesh.key")
        #expect(plan.entries.map(\.name) == ["worker", "dispatcher"])
        let worker = plan.entries[0]
        #expect(worker.arguments == ["demo-worker"])
        #expect(worker.count == 3)
        #expect(worker.restart == .onFailure)
        #expect(worker.stopTimeout == .seconds(5))
        #expect(worker.position == TextPosition(line: 4, column: 3))
        let dispatcher = plan.entries[1]
        #expect(dispatcher.arguments == ["demo-worker", "--dispatch", "12", "--workers", "3"])
        #expect(dispatcher.after == ["worker"])
        #expect(dispatcher.restart == .never)
        #expect(dispatcher.count == 1)
    }

    @Test("the same file in JSON reads the same, and so does flow YAML over several lines")
    func jsonAndFlow() throws {
        let json = """
            {
              "coordinator": "start",
              "authkey_file": "mesh.key",
              "nodes": {
                "worker": {"command": "demo-worker", "count": 3, "restart": "on-failure"},
            \t"dispatcher": {
                  "command": ["demo-worker", "--dispatch", "12", "--workers", "3"],
                  "after": ["worker"], "restart": "never"
                }
              }
            }
            """
        let fromJSON = try parse(json)
        let fromYAML = try parse(LaunchFileTests.example)
        #expect(fromJSON.entries.map(\.arguments) == fromYAML.entries.map(\.arguments))
        #expect(fromJSON.entries.map(\.count) == [3, 1])
        #expect(fromJSON.entries.map(\.after) == [[], ["worker"]])
        #expect(fromJSON.coordinator == fromYAML.coordinator)
        // A JSON string where a number belongs is a wrong type, as in JSON.
        let wrong = failure(#"{"nodes": {"w": {"command": "x", "count": "3"}}}"#)
        #expect(wrong?.position == TextPosition(line: 1, column: 43))
        #expect(wrong?.message.contains("expected a whole number") == true)
    }

    @Test("coordinators: a list of addresses, as a YAML list or one string with commas; not with coordinator, not empty, not a bad address")
    func coordinatorList() throws {
        let nodes = "nodes:\n  a:\n    command: demo-worker\n"
        let listed = try parse("coordinators:\n  - 10.0.0.1:6374\n  - 10.0.0.2:6374\n" + nodes)
        #expect(listed.coordinator == .address("10.0.0.1:6374,10.0.0.2:6374"))
        let inline = try parse("coordinators: 10.0.0.1:6374, 10.0.0.3:7000\n" + nodes)
        #expect(inline.coordinator == .address("10.0.0.1:6374,10.0.0.3:7000"))
        #expect(failure("coordinator: 10.0.0.1:6374\ncoordinators: [10.0.0.2:6374]\n" + nodes)?.description.contains("not both") == true)
        #expect(failure("coordinators: []\n" + nodes) != nil)
        #expect(failure("coordinators: [10.0.0.1:notaport]\n" + nodes)?.description.contains("HOST:PORT") == true)
    }

    @Test("YAML forms: block lists at the key's indentation, nested lists, quotes, escapes, comments, ---")
    func yamlForms() throws {
        let text = """
            ---
            # a comment line
            coordinator: "10.0.0.2:6374"
            until_done:
            - sender
            nodes:
              sender:
                command:
                  - demo-sender
                  - 'it''s one argument'
                  - "tab\\there \\u00e9 \\ud83d\\ude00 # not a comment"
                env: {MESH_LOG_LEVEL: debug, COUNT: 3, EMPTY: ''}
                cwd: ../run
                delay: 500ms
                stop_timeout: 2.5
                max_restarts: 0
              shelled:
                shell: true
                command: echo $HOME | wc -c   # a shell runs this one
                restart: always
            """
        let plan = try parse(text)
        #expect(plan.coordinator == .address("10.0.0.2:6374"))
        #expect(plan.untilDone == ["sender"])
        let sender = plan.entries[0]
        #expect(sender.arguments == ["demo-sender", "it's one argument", "tab\there é 😀 # not a comment"])
        #expect(sender.environment == ["MESH_LOG_LEVEL": "debug", "COUNT": "3", "EMPTY": ""])
        #expect(sender.workingDirectory == "/work/run")
        #expect(sender.delay == .milliseconds(500))
        #expect(sender.stopTimeout == .milliseconds(2500))
        #expect(sender.maxRestarts == 0)
        #expect(plan.entries[1].arguments == ["/bin/sh", "-c", "echo $HOME | wc -c"])
        #expect(plan.entries[1].restart == .always)
        // Without a coordinator key: $MESH_COORDINATOR, else the default.
        let bare = "nodes:\n  a:\n    command: x\n"
        #expect(try parse(bare).coordinator == .address("127.0.0.1:6374"))
        #expect(try parse(bare, environment: ["MESH_COORDINATOR": "10.1.1.1:7000"]).coordinator == .address("10.1.1.1:7000"))
        #expect(try parse("coordinator: start 127.0.0.1:0\n" + bare).coordinator == .start(host: "127.0.0.1", port: 0))
    }

    @Test("a list item holding a mapping, and a document node tree, read by the generic reader")
    func documentTree() throws {
        let node = try DocumentParser.parse("- a: 1\n  b: [x, 'y']\n- - 2\n  - 3\n-\n", file: "t")
        guard case .sequence(let items) = node.content, items.count == 3 else {
            Issue.record("not a list of three: \(node)")
            return
        }
        #expect(items[0].mappingValue("a")?.content == .scalar("1", quoted: false))
        #expect(
            items[0].mappingValue("b")?.content
                == .sequence([
                    DocumentNode(content: .scalar("x", quoted: false), position: TextPosition(line: 2, column: 7)),
                    DocumentNode(content: .scalar("y", quoted: true), position: TextPosition(line: 2, column: 10)),
                ]))
        guard case .sequence(let inner) = items[1].content else {
            Issue.record("not a nested list: \(items[1])")
            return
        }
        #expect(inner.map(\.content) == [.scalar("2", quoted: false), .scalar("3", quoted: false)])
        #expect(items[2].content == .empty)
    }

    // MARK: Bad files: line, column and what was expected

    @Test("tabs, unknown keys, wrong types, a missing command and unbalanced quotes name line and column")
    func badFiles() {
        expectFailure("nodes:\n\tworker:\n    command: x\n", line: 2, column: 1, mentioning: "a tab in the indentation")
        expectFailure(
            "nodes:\n  worker:\n    comand: demo-worker\n", line: 3, column: 5,
            mentioning: "unknown key \"comand\" in entry \"worker\"; did you mean \"command\"?")
        expectFailure("nodez:\n  w:\n    command: x\n", line: 1, column: 1, mentioning: "unknown key \"nodez\"")
        expectFailure(
            "nodes:\n  worker:\n    command: x\n    count: three\n", line: 4, column: 12,
            mentioning: "expected a whole number from 1 to 1000 for count")
        expectFailure(
            "nodes:\n  worker:\n    command: x\n    count: [3]\n", line: 4, column: 12, mentioning: "found a list")
        expectFailure(
            "nodes:\n  worker:\n    command: x\n    restart: sometimes\n", line: 4, column: 14,
            mentioning: "expected on-failure, always or never")
        expectFailure(
            "nodes:\n  worker:\n    count: 3\n", line: 2, column: 3, mentioning: "entry \"worker\" has no \"command\"")
        expectFailure(
            "nodes:\n  worker:\n    command: \"demo-worker --dispatch\n", line: 3, column: 14,
            mentioning: "unclosed quote")
        expectFailure(
            "nodes:\n  worker:\n    command: demo-worker 'one two\n", line: 3, column: 26,
            mentioning: "unclosed quote: no closing '")
        expectFailure("nodes:\n  w:\n    command: [a, b\n", line: 3, column: 14, mentioning: "unclosed '['")
        expectFailure("nodes: {w: {command: x}\n", line: 1, column: 8, mentioning: "unclosed '{'")
        expectFailure(
            "nodes:\n  w:\n    command: a | b\n", line: 3, column: 16, mentioning: "'|' needs a shell")
        expectFailure("nodes:\n  w:\n    command: ''\n", line: 3, column: 14, mentioning: "is empty")
        expectFailure("nodes:\n  w: demo-worker\n", line: 2, column: 6, mentioning: "expected the settings of \"w\"")
        expectFailure(
            "nodes:\n  w:\n    command: x\n  w:\n    command: y\n", line: 4, column: 3, mentioning: "duplicate key \"w\"")
        expectFailure(
            "nodes:\n  w:\n    command: x\n    after: [v]\n", line: 4, column: 12,
            mentioning: "\"after\" names \"v\", which is not an entry")
        expectFailure(
            "nodes:\n  a:\n    command: x\n    after: b\n  b:\n    command: x\n    after: a\n", line: 2, column: 3,
            mentioning: "a -> b -> a")
        expectFailure(
            "until_done: [w]\nnodes:\n  w:\n    command: x\n    restart: always\n", line: 1, column: 13,
            mentioning: "restart: always")
        expectFailure("nodes:\n  w:\n    command: x\n     extra: 1\n", line: 4, column: 6, mentioning: "unexpected indentation")
        expectFailure("nodes:\n  w:\n    command: >\n      x\n", line: 3, column: 14, mentioning: "block scalars")
        expectFailure("nodes: &anchor\n  w:\n    command: x\n", line: 1, column: 8, mentioning: "anchors")
        expectFailure("nodes:\n  w:\n    command: x: y\n", line: 3, column: 15, mentioning: "unexpected ':'")
        expectFailure("nodes:\n  bad name:\n    command: x\n", line: 2, column: 3, mentioning: "invalid entry name")
        expectFailure("coordinator: start here now\nnodes:\n  w:\n    command: x\n", line: 1, column: 14, mentioning: "start HOST:PORT")
        expectFailure("nodes:\n  w:\n    command: x\n    delay: soon\n", line: 4, column: 12, mentioning: "number of seconds")
        expectFailure("nodes:\n  w:\n    command: x\n---\nnodes: {}\n", line: 4, column: 1, mentioning: "only one document")
        expectFailure("[1, 2]\n", line: 1, column: 1, mentioning: "expected a mapping")
        let empty = failure("# only a comment\n\n")
        #expect(empty?.description == "/work/demo/launch.yaml: the file is empty")
        expectFailure("coordinator: start\n", line: 1, column: 1, mentioning: "missing \"nodes\"")
    }

    @Test("hostile input: deep nesting, long lines and random bytes end in an error or a value, never a crash")
    func hostileInput() {
        var generator = SplitMix64(seed: 14)
        let alphabet = Array("ab: -[]{},'\"#\t\n \\&*!|>%@?~0123456789é".unicodeScalars)
        for _ in 0..<2000 {
            let length = Int.random(in: 0..<200, using: &generator)
            let text = String(String.UnicodeScalarView((0..<length).map { _ in alphabet.randomElement(using: &generator)! }))
            _ = try? LaunchPlan.parse(text, file: "fuzz")
        }
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: LaunchFileError.self) { try LaunchPlan.parse(deep, file: "deep") }
        let deepBlock = (0..<200).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n")
        #expect(throws: LaunchFileError.self) { try LaunchPlan.parse(deepBlock, file: "deep") }
        let long = "nodes:\n  w:\n    command: " + String(repeating: "x", count: 200_000) + "\n"
        #expect(throws: Never.self) { try LaunchPlan.parse(long, file: "long") }
    }

    // MARK: Commands and restarts

    @Test("commands split as a shell would, without running one")
    func shellWords() throws {
        #expect(try ShellWords.split("a  b\tc") == ["a", "b", "c"])
        #expect(try ShellWords.split(#"a "b c" 'd "e"' f\ g "h\"i" ''"#) == ["a", "b c", #"d "e""#, "f g", #"h"i"#, ""])
        #expect(throws: ShellWords.SplitError(offset: 2, message: "unclosed quote: no closing \"")) {
            try ShellWords.split(#"a "b"#)
        }
        for word in ["plain", "two words", "it's", "", "$HOME", "a\"b"] {
            #expect(try ShellWords.split(ShellWords.quote(word)) == [word])
        }
    }

    @Test("restarts back off from 0.5 s doubling to 10 s, reset after 30 s of running, and give up at the limit")
    func restartPolicy() {
        var tracker = RestartTracker(policy: .onFailure, limit: 7)
        let delays = (0..<7).map { _ in tracker.exited(.exited(1), ranFor: .seconds(1)) }
        #expect(
            delays == [0.5, 1, 2, 4, 8, 10, 10].map { .restart(after: .milliseconds(Int($0 * 1000))) })
        #expect(tracker.exited(.signalled(SIGKILL), ranFor: .seconds(1)) == .giveUp)

        var recovering = RestartTracker(policy: .onFailure, limit: 3)
        _ = recovering.exited(.exited(1), ranFor: .seconds(1))
        _ = recovering.exited(.exited(1), ranFor: .seconds(1))
        #expect(recovering.exited(.exited(1), ranFor: .seconds(31)) == .restart(after: .milliseconds(500)))
        #expect(recovering.exited(.exited(0), ranFor: .seconds(1)) == .stayDown)

        var always = RestartTracker(policy: .always, limit: 1)
        #expect(always.exited(.exited(0), ranFor: .zero) == .restart(after: .milliseconds(500)))
        var never = RestartTracker(policy: .never, limit: 10)
        #expect(never.exited(.signalled(SIGKILL), ranFor: .zero) == .stayDown)
    }
}
