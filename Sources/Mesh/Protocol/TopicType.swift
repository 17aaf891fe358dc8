import Foundation

/// The message type a node declares for a topic it sends on or listens to: a name, and a
/// fingerprint of the type's shape.
///
/// Two declarations on one topic agree when their names are equal and, where both carry a
/// fingerprint, the fingerprints are equal too. A declaration without a fingerprint (a Python
/// node that gave only a name) is checked by name alone; a node that declares nothing (the CLI's
/// `echo`, the bag recorder, the string-topic API) is a dynamic consumer and agrees with anything.
public struct TopicType: Codable, Sendable, Hashable, CustomStringConvertible {
    /// The type's name as its program spells it, without the module (`Pose`, `Wrapper<Int>`).
    public var name: String
    /// 16 lowercase hex digits: the first 64 bits of the SHA-256 of the type's shape
    /// (docs/PROTOCOL.md, "Typed topics"); `nil` when only the name is declared.
    public var fingerprint: String?

    public init(name: String, fingerprint: String? = nil) {
        self.name = name
        self.fingerprint = fingerprint
    }

    /// The declaration of a Swift `Decodable` type: its name and the fingerprint of its shape, or
    /// the name alone when the shape cannot be seen whole (see docs/PROTOCOL.md §16.1).
    public init<T: Decodable>(of type: T.Type) {
        name = String(describing: type)
        fingerprint = TypeShape.of(type).map(TypeShape.fingerprint(of:))
    }

    /// `false` when messages of one type cannot be read as the other.
    public func agrees(with other: TopicType) -> Bool {
        guard name == other.name else { return false }
        guard let mine = fingerprint, let theirs = other.fingerprint else { return true }
        return mine == theirs
    }

    /// `Pose` or `Pose (3f2a9c0d11b2e4f6)`.
    public var description: String { fingerprint.map { "\(name) (\($0))" } ?? name }

    /// The most bytes a declared type name may have.
    public static let maximumNameBytes = 255

    /// Checks a declaration that came from the network.
    ///
    /// - Throws: ``MeshError/invalidName(_:reason:)`` for an empty, long or unprintable name, or
    ///   a fingerprint that is not 16 lowercase hex digits.
    package func validate() throws(MeshError) {
        try validateName(name, kind: "type name")
        if let fingerprint {
            guard fingerprint.utf8.count == 16, fingerprint.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
            else {
                throw .invalidName(String(fingerprint.prefix(40)), reason: "a type fingerprint is 16 lowercase hex digits")
            }
        }
    }
}
