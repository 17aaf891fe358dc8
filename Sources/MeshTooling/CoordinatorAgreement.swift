import Foundation
import Mesh

extension MeshReport {
    /// Several coordinators side by side, as `mesh status` shows them for a coordinator list:
    /// which answer, and whether the ones that answer hold the same records (the same node ids,
    /// each at the same version; PROTOCOL.md, "Several coordinators").
    package struct Coordinators: Encodable, Sendable {
        package struct Entry: Encodable, Sendable, Equatable {
            package var address: String
            /// True when it answered.
            package var up: Bool
            /// Why it did not answer.
            package var error: String?
            package var nodeCount: Int?
            /// The topology's version there (each coordinator counts its own).
            package var version: UInt64?
            /// Records here and not at the first coordinator that answered, by id.
            package var extra: [String]
            /// Records at the first coordinator that answered and not here, by id.
            package var missing: [String]
            /// Records held at both, at another version here.
            package var otherVersion: [String]
            /// True when it holds exactly what the first that answered holds.
            package var agrees: Bool?
        }

        package var coordinators: [Entry]
        /// True when at least two answered and all that answered hold the same records.
        package var agree: Bool
        /// The addresses that did not answer.
        package var dead: [String]

        /// - Parameter answers: each coordinator's address, with its status or why it gave none,
        ///   in the order of the list.
        package init(_ answers: [(address: String, status: Result<CoordinatorStatus, any Error>)]) {
            var reference: [String: UInt64]?
            var entries: [Entry] = []
            var allAgree = true
            var live = 0
            for (address, answer) in answers {
                switch answer {
                case .failure(let error):
                    entries.append(
                        Entry(address: address, up: false, error: "\(error)", extra: [], missing: [], otherVersion: []))
                case .success(let status):
                    live += 1
                    var records: [String: UInt64] = [:]
                    for node in status.nodes { records[node.node.id] = node.node.version ?? 0 }
                    let base = reference ?? records
                    if reference == nil { reference = records }
                    let extra = records.keys.filter { base[$0] == nil }.sorted()
                    let missing = base.keys.filter { records[$0] == nil }.sorted()
                    let otherVersion = records.compactMap { id, version in
                        base[id].flatMap { $0 == version ? nil : id }
                    }.sorted()
                    let agrees = extra.isEmpty && missing.isEmpty && otherVersion.isEmpty
                    allAgree = allAgree && agrees
                    entries.append(
                        Entry(
                            address: address, up: true, nodeCount: status.nodes.count, version: status.version, extra: extra,
                            missing: missing, otherVersion: otherVersion, agrees: agrees))
                }
            }
            coordinators = entries
            agree = live >= 2 && allAgree
            dead = entries.filter { !$0.up }.map(\.address)
        }
    }
}
