// swift-tools-version: 6.0
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode comes from `swiftLanguageModes`;
/// these add the checks we want on top of it.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "swift-mesh",
    products: [
        .library(name: "Mesh", targets: ["Mesh"]),
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
        .target(name: "CMeshSystem"),
        // Our SHA-256 compression on the x86 SHA extensions, chosen at run time when the CPU has them.
        .target(name: "CMeshSHA", cSettings: [.unsafeFlags(["-O2"])]),
        // CRC-32 on the x86 carry-less multiply, chosen at run time, for the MCAP files of `mesh bag`.
        .target(name: "CMeshCRC"),
        // Optimized in every build: the key stretching (PBKDF2) every process does at start costs
        // ~1 s unoptimized and ~30 ms optimized, and the test suite starts many processes.
        .target(
            name: "MeshCrypto", dependencies: ["CMeshSHA"],
            swiftSettings: swiftSettings + [.unsafeFlags(["-O"])]),
        // The default codec's JSON, optimized in every build like MeshCrypto: unoptimized it is
        // slower than Foundation's prebuilt JSONEncoder, and debug builds and tests send JSON too.
        .target(name: "MeshJSON", swiftSettings: swiftSettings + [.unsafeFlags(["-O"])]),
        .target(
            name: "Mesh", dependencies: ["MeshCrypto", "MeshJSON", "CMeshSystem", "CMeshCRC"],
            swiftSettings: swiftSettings),
        .executableTarget(name: "mesh-coordinator", dependencies: ["Mesh"], swiftSettings: swiftSettings),
        .executableTarget(name: "mesh", dependencies: ["Mesh"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "mesh-bench", dependencies: ["Mesh", "MeshCrypto"], swiftSettings: swiftSettings),
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
        .testTarget(
            name: "MeshCryptoTests", dependencies: ["MeshCrypto"], exclude: ["Vectors"],
            swiftSettings: swiftSettings),
        .testTarget(name: "MeshTests", dependencies: ["Mesh", "MeshCrypto", "MeshJSON"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)
