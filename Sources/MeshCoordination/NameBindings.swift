import Foundation
import Mesh

/// Which static keys may register under which node names: the coordinator's optional names file.
///
/// ```
/// # name: the public keys (64 hex digits, from `mesh keygen --node --public`) allowed to use it
/// worker: 1f0c…, 9ab2…
/// camera: 77de…
/// *: closed        # names not listed are refused (the default is open)
/// ```
///
/// A listed name can only be registered by a node whose handshake proved one of its keys, so a
/// stranger holding the mesh key cannot join that worker pool. Without `*: closed`, names that are
/// not listed stay open to every member.
public struct NameBindings: Sendable, Equatable {
    /// The keys allowed for each listed name.
    public private(set) var keys: [String: Set<String>] = [:]
    /// True when names not listed are refused.
    public private(set) var unlistedClosed = false

    public init() {}

    /// Parses a names file's text.
    ///
    /// - Parameters:
    ///   - text: The file's contents.
    ///   - path: The file's name, for errors.
    /// - Throws: `MeshError.invalidNamesFile(path:reason:)` naming the line and what is wrong.
    public init(parsing text: String, path: String = "names file") throws(MeshError) {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            func problem(_ reason: String) -> MeshError {
                .invalidNamesFile(path: path, reason: "line \(index + 1): \(reason)")
            }
            guard let colon = line.lastIndex(of: ":") else { throw problem("expected \"name: key, key\"") }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let rest = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw problem("the name is empty") }
            if name == "*" {
                switch rest {
                case "closed": unlistedClosed = true
                case "open": unlistedClosed = false
                default: throw problem("\"*\" takes \"open\" or \"closed\", not \"\(MeshText.escaped(String(rest.prefix(40))))\"")
                }
                continue
            }
            var allowed = keys[name] ?? []
            for piece in rest.split(separator: ",") {
                let key = piece.trimmingCharacters(in: .whitespaces).lowercased()
                guard NodeID.publicKeyBytes(key) != nil else {
                    throw problem("\"\(MeshText.escaped(String(key.prefix(80))))\" is not a public key (64 hex digits)")
                }
                allowed.insert(key)
            }
            guard !allowed.isEmpty else { throw problem("no keys for \"\(MeshText.escaped(name))\"") }
            keys[name] = allowed
        }
    }

    /// Reads and parses a names file.
    ///
    /// - Throws: `MeshError.invalidNamesFile(path:reason:)`.
    public init(contentsOfFile path: String) throws(MeshError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .invalidNamesFile(path: path, reason: "cannot read it (\(error.localizedDescription))")
        }
        try self.init(parsing: text, path: path)
    }

    /// Why a node with public key `key` (64 hex digits) may not use `name`, or `nil` when it may.
    public func refusal(name: String, key: String?) -> String? {
        if let allowed = keys[name] {
            if let key, allowed.contains(key) { return nil }
            return "name \"\(name)\" is reserved by the names file: this node's key is not listed for it"
        }
        return unlistedClosed ? "name \"\(name)\" is not in the names file, which refuses names it does not list" : nil
    }
}
