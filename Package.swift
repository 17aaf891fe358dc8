// swift-tools-version: 6.0
import PackageDescription

// swift-mesh's targets, lowest layer first. A target imports only targets above it in this list;
// each one's folder under Sources/ has the same name, and its README.md says what it holds and
// what it may import.
//
//   CMeshSystem, CMeshSHA, CMeshCRC   C shims: Linux calls Swift does not import; SHA-NI; CRC-32
//   CMeshChaCha                       C shim: ChaCha20-Poly1305, AVX2 chosen at run time
//   MeshCrypto                        SHA-256, HMAC, HKDF, PBKDF2, X25519, ChaCha20-Poly1305, Noise
//                                     (library product)
//   MeshJSON                          the default codec's JSON (internal)
//   Mesh                              the core a user links: transport, protocol, auth, node
//   MeshCoordination                  the coordinator, embeddable as an actor (library product)
//   MeshTooling                       inspector and report, for the command-line tools
//   MeshHTTP, MeshWeb                 the HTTP server; the web view and Prometheus metrics
//   MeshBag, MeshLaunch               MCAP recording and replay; launch files and supervision
//   mesh, mesh-coordinator, ...       the executables
//   MeshTesting                       what the test targets share

/// Settings every Swift target shares: Swift 6 language mode comes from `swiftLanguageModes`;
/// these add the checks we want on top of it.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// `MESH_OPTIMIZE=1` (which `scripts/test` and `scripts/build` set) builds the key stretching, the
/// SHA-256 kernel and the JSON codec optimized even in debug builds: unoptimized, PBKDF2 costs
/// about 1 s per process start and the JSON codec is slower than Foundation's, and the test suite
/// starts hundreds of processes. It counts only where this package is being built for itself: the
/// environment is the user's too (one who exported MESH_OPTIMIZE=1 to run our tests), and SwiftPM
/// refuses unsafe flags in a dependency resolved by version or from a registry, which it keeps
/// under a `checkouts` or `registry/downloads` directory (of `.build`, or of Xcode's
/// SourcePackages). There the targets build as the user's configuration says.
let isResolvedDependency = ["/checkouts/", "/registry/downloads/"].contains { Context.packageDirectory.contains($0) }
let optimizeHotTargets = Context.environment["MESH_OPTIMIZE"] == "1" && !isResolvedDependency
let optimizedSwift: [SwiftSetting] = optimizeHotTargets ? [.unsafeFlags(["-O"])] : []
let optimizedC: [CSetting] = optimizeHotTargets ? [.unsafeFlags(["-O2"])] : []

let package = Package(
    name: "swift-mesh",
    products: [
        .library(name: "Mesh", targets: ["Mesh"]),
        .library(name: "MeshCoordination", targets: ["MeshCoordination"]),
        .library(name: "MeshCrypto", targets: ["MeshCrypto"]),
        .executable(name: "mesh-coordinator", targets: ["mesh-coordinator"]),
        .executable(name: "mesh", targets: ["mesh"]),
        .executable(name: "mesh-bench", targets: ["mesh-bench"]),
        .executable(name: "demo-receiver", targets: ["demo-receiver"]),
        .executable(name: "demo-sender", targets: ["demo-sender"]),
        .executable(name: "demo-worker", targets: ["demo-worker"]),
        .executable(name: "demo-service", targets: ["demo-service"]),
    ],
    targets: [
        // The few Linux calls Swift's Glibc module does not import (epoll, eventfd, accept4).
        .target(name: "CMeshSystem", exclude: ["README.md"]),
        // Our SHA-256 compression on the x86 SHA extensions, chosen at run time when the CPU has them.
        .target(name: "CMeshSHA", exclude: ["README.md"], cSettings: optimizedC),
        // ChaCha20 and Poly1305 for ChaChaPoly; an AVX2 ChaCha20 chosen at run time, portable C otherwise.
        .target(name: "CMeshChaCha", exclude: ["README.md"], cSettings: optimizedC),
        // CRC-32 on the x86 carry-less multiply, chosen at run time, for the MCAP files of `mesh bag`.
        .target(name: "CMeshCRC", exclude: ["README.md"]),
        .target(
            name: "MeshCrypto", dependencies: ["CMeshSHA", "CMeshChaCha"], exclude: ["README.md"],
            swiftSettings: swiftSettings + optimizedSwift),
        .target(name: "MeshJSON", exclude: ["README.md"], swiftSettings: swiftSettings + optimizedSwift),
        .target(
            name: "Mesh", dependencies: ["MeshCrypto", "MeshJSON", "CMeshSystem"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .target(
            name: "MeshCoordination", dependencies: ["Mesh", "MeshCrypto"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .target(
            name: "MeshTooling", dependencies: ["Mesh", "MeshCrypto"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .target(
            name: "MeshHTTP", dependencies: ["Mesh", "CMeshSystem"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .target(
            name: "MeshWeb", dependencies: ["Mesh", "MeshCoordination", "MeshHTTP", "MeshTooling", "MeshCrypto"],
            exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(
            name: "MeshBag", dependencies: ["Mesh", "CMeshCRC"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(
            name: "MeshLaunch", dependencies: ["Mesh", "MeshTooling", "CMeshSystem"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "mesh-coordinator", dependencies: ["Mesh", "MeshCoordination", "MeshWeb"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "mesh", dependencies: ["Mesh", "MeshTooling", "MeshBag", "MeshLaunch", "MeshWeb", "MeshCrypto"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "mesh-bench", dependencies: ["Mesh", "MeshCoordination", "MeshBag", "MeshCrypto", "MeshTesting"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "demo-receiver", dependencies: ["Mesh"], path: "Demo/demo-receiver",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "demo-sender", dependencies: ["Mesh"], path: "Demo/demo-sender",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "demo-worker", dependencies: ["Mesh"], path: "Demo/demo-worker",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "demo-service", dependencies: ["Mesh"], path: "Demo/demo-service",
            swiftSettings: swiftSettings),
        .target(
            name: "MeshTesting", dependencies: ["Mesh", "MeshCoordination"], exclude: ["README.md"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MeshCryptoTests", dependencies: ["MeshCrypto", "MeshTesting"], exclude: ["Vectors", "Standalone"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MeshTests",
            dependencies: ["Mesh", "MeshCoordination", "MeshTooling", "MeshCrypto", "MeshJSON", "MeshTesting"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MeshCoordinationTests", dependencies: ["MeshCoordination", "Mesh", "MeshTesting"],
            swiftSettings: swiftSettings),
        .testTarget(name: "MeshBagTests", dependencies: ["MeshBag", "Mesh", "MeshTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MeshLaunchTests", dependencies: ["MeshLaunch", "MeshTooling", "Mesh", "MeshTesting"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MeshWebTests",
            dependencies: ["MeshWeb", "MeshHTTP", "MeshCoordination", "MeshTooling", "Mesh", "MeshCrypto", "MeshTesting"],
            swiftSettings: swiftSettings),
        // The executables (`mesh`, the demos, `mesh-bench`) and the Python client, run as processes.
        .testTarget(name: "MeshToolsTests", dependencies: ["Mesh", "MeshCrypto", "MeshTesting"], swiftSettings: swiftSettings),
        // mesh-bench's pure parts (the peers comparison), imported with @testable, and its `peers` command.
        .testTarget(
            name: "MeshBenchTests", dependencies: ["mesh-bench", "MeshTesting"], exclude: ["Fixtures"],
            swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)
