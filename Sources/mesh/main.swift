import Foundation
import Mesh

/// mesh: see and poke a running mesh.
let usage = """
    usage: mesh <command> [options]

    Commands arrive in a later release; this build answers:
      --version   print the version
      --help      print this help

    Common options (for the commands to come):
      --coordinator HOST:PORT   default $MESH_COORDINATOR, else 127.0.0.1:6374
      --authkey KEY | --authkey-file PATH   default $MESH_AUTHKEY
    """

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--version":
    print("mesh \(MeshDefaults.version)")
case "--help", "-h", nil:
    print(usage)
default:
    FileHandle.standardError.write(Data("mesh: unknown command \"\(arguments[0])\"; see mesh --help\n".utf8))
    exit(2)
}
