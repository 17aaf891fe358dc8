// swift-tools-version: 6.0
// Checks of MeshCrypto that need it built exactly as a dependent's plain release build builds it
// (no MESH_OPTIMIZE, no unsafe flags): a package of its own, depending on swift-mesh by path.
// check.sh runs `taint` under valgrind (constant time); speed.sh runs `speed` beside OpenSSL.
import PackageDescription

let package = Package(
    name: "meshcrypto-constant-time",
    dependencies: [.package(name: "swift-mesh", path: "../../..")],
    targets: [
        .executableTarget(
            name: "taint", dependencies: [.product(name: "MeshCrypto", package: "swift-mesh")],
            swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "speed", dependencies: [.product(name: "MeshCrypto", package: "swift-mesh")],
            swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)
