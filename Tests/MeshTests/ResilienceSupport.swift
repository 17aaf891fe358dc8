import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

#if canImport(Glibc)
import Glibc
#endif

/// The parent of every resilience suite (coordinator loss, node failure, hostile input, leaks,
/// network namespaces).
///
/// `.serialized` is recursive, so those suites run one at a time: they kill processes, time
/// recoveries and measure the whole process's descriptors and memory, and would disturb one
/// another if they overlapped. Run them alone with `--filter ResilienceTests`.
@Suite("Resilience", .serialized)
struct ResilienceTests {}
