// swift-tools-version: 6.0
// The constant-time check of MeshCrypto's X25519 and ChaCha20-Poly1305: see check.sh. A package
// of its own, depending on swift-mesh by path, so that MeshCrypto is built exactly as a
// dependent's plain release build builds it (no MESH_OPTIMIZE, no unsafe flags).
import PackageDescription

let package = Package(
    name: "meshcrypto-constant-time",
    dependencies: [.package(name: "swift-mesh", path: "../../..")],
    targets: [
        .executableTarget(
            name: "taint", dependencies: [.product(name: "MeshCrypto", package: "swift-mesh")],
            swiftSettings: [.swiftLanguageMode(.v6)])
    ]
)
