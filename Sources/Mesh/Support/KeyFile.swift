import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The mesh key as a file: reading one (`--authkey-file`) and making a new one (`mesh keygen`).
///
/// A key is used as text: the UTF-8 bytes of the file's content without its trailing newline.
/// ``newKey(_:)`` prints 32 random bytes as 64 hex digits (or 44 base64 characters), and that
/// text is the key, like any other.
public enum MeshKeyFile {
    /// Why a key file could not be used.
    public enum Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// The file could not be opened or read; `reason` is the system's.
        case unreadable(path: String, reason: String)
        /// The file holds nothing but line ends.
        case empty(path: String)
        /// The file is larger than ``maximumBytes``: not a key file.
        case tooLarge(path: String)
        /// The file is not UTF-8 text.
        case notText(path: String)

        public var description: String {
            switch self {
            case .unreadable(let path, let reason):
                return "cannot read the authkey file \(path): \(reason)"
            case .empty(let path):
                return "the authkey file \(path) is empty (make a key with: mesh keygen > \(path))"
            case .tooLarge(let path):
                return "the authkey file \(path) is larger than \(MeshKeyFile.maximumBytes) bytes; it should hold one key"
            case .notText(let path):
                return "the authkey file \(path) is not UTF-8 text"
            }
        }
    }

    /// The largest key file read.
    public static let maximumBytes = 4096

    /// Reads the key from the file at `path`.
    ///
    /// Trailing line ends (`\n`, `\r\n`) are trimmed; everything else is the key. When the file's
    /// permissions let its group or others read or write it, `warn` gets one line saying so and
    /// how to fix it, and the key is still returned.
    /// - Parameters:
    ///   - path: the file.
    ///   - warn: takes the warning line (without a program name or a newline).
    /// - Returns: the key.
    /// - Throws: ``Error`` when the file cannot be read, is empty, too large or not text.
    public static func read(path: String, warn: (String) -> Void) throws(Error) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        if status.st_mode & S_IFMT == S_IFDIR { throw .unreadable(path: path, reason: "it is a directory") }
        let mode = status.st_mode & 0o777
        // A pipe (`--authkey-file <(...)`) has no permissions worth warning about.
        if status.st_mode & S_IFMT == S_IFREG, mode & 0o077 != 0 {
            warn(
                "warning: the authkey file \(path) can be read by others (mode \(String(format: "%04o", UInt32(mode)))); restrict it with: chmod 600 \(path)"
            )
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while bytes.count <= maximumBytes {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        guard bytes.count <= maximumBytes else { throw .tooLarge(path: path) }
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw .empty(path: path) }
        guard let key = String(validating: bytes, as: UTF8.self) else { throw .notText(path: path) }
        return key
    }

    /// How ``newKey(_:)`` writes the random bytes.
    public enum Encoding: Sendable {
        /// 64 lowercase hex digits.
        case hex
        /// 44 characters of standard base64, padding included.
        case base64
    }

    /// The number of random bytes in a new key.
    public static let newKeyBytes = 32

    /// A new random key: 32 bytes from the system's generator, as text.
    ///
    /// - Parameter encoding: hex (the default) or base64.
    /// - Returns: the key's text; the key is this text, used as any other key.
    public static func newKey(_ encoding: Encoding = .hex) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<newKeyBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
        switch encoding {
        case .hex:
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
        case .base64:
            return Data(bytes).base64EncodedString()
        }
    }
}
