import Foundation

/// The fixed-size output of a ``HashFunction``.
///
/// A digest is a sequence of its bytes, prints as lowercase hex, and compares in constant time.
public protocol Digest: Hashable, ContiguousBytes, CustomStringConvertible, Sequence, Sendable
where Element == UInt8 {
    /// The number of bytes in every digest of this type.
    static var byteCount: Int { get }
}
