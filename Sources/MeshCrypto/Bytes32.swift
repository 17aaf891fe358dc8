import Foundation

/// Thirty-two bytes held inline, for X25519 keys and shared secrets: no heap storage to share,
/// copy or leave behind.
struct Bytes32: Sendable {
    /// The bytes in order; the tuple's memory is the 32 bytes.
    var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    /// All zeros.
    init() {}

    /// Copies exactly 32 bytes.
    ///
    /// - Parameters:
    ///   - bytes: The bytes to hold.
    /// - Throws: ``CryptoKitError/incorrectKeySize`` when `bytes` is not 32 bytes long.
    init<D: ContiguousBytes>(_ bytes: D) throws {
        let copied = bytes.withUnsafeBytes { source -> Bool in
            guard source.count == 32 else { return false }
            Swift.withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            return true
        }
        guard copied else { throw CryptoKitError.incorrectKeySize }
    }

    /// Copies 32 bytes the caller guarantees, such as a hash output.
    ///
    /// - Parameters:
    ///   - bytes: Exactly 32 bytes; anything else is a programming error and traps.
    init(checked bytes: [UInt8]) {
        precondition(bytes.count == 32, "Bytes32: \(bytes.count) bytes, not 32")
        bytes.withUnsafeBytes { source in
            Swift.withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
        }
    }

    /// Calls `body` with the 32 bytes.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage, body)
    }

    /// Calls `body` with the 32 bytes to change.
    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeMutableBytes(of: &storage, body)
    }

    /// A copy as `Data`.
    var data: Data { withUnsafeBytes { Data($0) } }

    /// Whether all 32 bytes are zero, looking at every byte.
    var isZero: Bool {
        (storage.0 | storage.1 | storage.2 | storage.3) == 0
    }

    /// Compares all 32 bytes without stopping at the first difference.
    static func constantTimeEquals(_ lhs: Bytes32, _ rhs: Bytes32) -> Bool {
        let difference =
            (lhs.storage.0 ^ rhs.storage.0) | (lhs.storage.1 ^ rhs.storage.1)
            | (lhs.storage.2 ^ rhs.storage.2) | (lhs.storage.3 ^ rhs.storage.3)
        return difference == 0
    }
}
