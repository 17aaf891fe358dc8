import Foundation
import Mesh
import MeshWeb

/// mesh: see and poke a running mesh. `mesh --help` lists the commands; docs/CLI.md describes
/// each with its output formats.

// A Ctrl-C or a `mesh node kill` that arrives while a command is still starting is kept for it,
// not allowed to end the process uncleanly.
MeshProcess.catchTerminationSignals()

/// Prints `mesh: MESSAGE` as one line on standard error and exits with `code`; what is left of
/// control characters after joining the lines is escaped (reasons may come from the network).
func fail(_ message: String, code: Int32) -> Never {
    let line = MeshText.escaped(message.split(whereSeparator: \.isNewline).joined(separator: " "))
    FileHandle.standardError.write(Data("mesh: \(line)\n".utf8))
    exit(code)
}

/// Runs the command the arguments name.
func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
    switch arguments.command {
    case .nodeList: try await NodeCommands.list(arguments, context)
    case .nodeKill: try await NodeCommands.kill(arguments, context)
    case .topicList: try await TopicCommands.list(arguments, context)
    case .topicInfo: try await TopicCommands.info(arguments, context)
    case .topicEcho: try await TopicCommands.echo(arguments, context)
    case .topicSend: try await TopicCommands.send(arguments, context)
    case .topicHz: try await TopicRateCommands.run(arguments, context, bandwidth: false)
    case .topicBw: try await TopicRateCommands.run(arguments, context, bandwidth: true)
    case .status: try await StatusCommand.run(arguments, context)
    case .discover: try await DiscoverCommand.run(arguments, context)
    case .speedtest: try await SpeedtestCommand.run(arguments, context)
    case .keygen:
        if let path = arguments.values["--public"] {
            let identity = try NodeIdentity(contentsOfFile: path)
            print("\(identity.publicKeyHex)  node id \(identity.id)")
        } else if arguments.has("--node") {
            print(NodeIdentity.generateKeyFileText(), terminator: "")
        } else {
            print(MeshKeyFile.newKey(arguments.has("--base64") ? .base64 : .hex))
        }
    case .launch: try await LaunchCommand.run(arguments, context)
    case .httpToken:
        guard let key = context.adminKey ?? context.authkey else {
            throw CommandLineError.failed("no authkey given (--authkey, --authkey-file or MESH_AUTHKEY); a mesh without one needs no token")
        }
        try context.checkKeys()
        print(try MeshWebServer.token(forAuthkey: key))
    case .serviceList: try await ServiceCommands.list(arguments, context)
    case .serviceCall: try await ServiceCommands.call(arguments, context)
    case .bagRecord: try await BagCommands.record(arguments, context)
    case .bagInfo: try BagCommands.info(arguments)
    case .bagPlay: try await BagCommands.play(arguments, context)
    }
}

MeshProcess.lineBufferedOutput()

let invocation: Invocation
do {
    invocation = try ArgumentParser.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(error.description, code: error.exitCode)
}

switch invocation {
case .help(let text):
    print(text)
case .version:
    print("mesh \(MeshDefaults.version)")
case .run(let arguments):
    do {
        try await run(arguments, try MeshContext(arguments))
    } catch let error as CommandLineError {
        fail(error.description, code: error.exitCode)
    } catch let error as MeshError {
        switch error {
        case .invalidAddress, .invalidName, .weakKey, .guessableKey: fail(error.description, code: 2)
        default: fail(error.description, code: 1)
        }
    } catch {
        fail("\(error)", code: 1)
    }
}
exit(0)
