import Foundation

/// Reads and parses the reference vectors in `Tests/MeshCryptoTests/Vectors`.
///
/// The files are found relative to this source file rather than through `Bundle.module`, so the
/// repository needs no resource processing. Parsers throw on anything they do not understand, and
/// tests compare the number of records parsed with a count of record lines taken without the
/// parser, so a parse that silently drops records fails.
enum VectorFiles {
    /// A malformed vector file.
    struct ParseError: Error, CustomStringConvertible {
        var file: String
        var line: Int
        var reason: String
        var description: String { "\(file):\(line): \(reason)" }
    }

    /// One SHA-256 known answer.
    struct HashVector: Sendable {
        var source: String
        var message: [UInt8]
        var digest: String
    }

    /// One HMAC-SHA256 known answer.
    struct MACVector: Sendable {
        var source: String
        var key: [UInt8]
        var message: [UInt8]
        var mac: String
    }

    static let nistFile = "SHA256ShortMsg.rsp"
    static let rfc4231File = "HMAC-SHA256-RFC4231.txt"
    static let randomFile = "SHA256-HMAC-random.txt"

    /// The vector directory next to this target's sources.
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // MeshCryptoTests
        .appendingPathComponent("Vectors")

    /// The lines of one vector file, without terminators.
    ///
    /// - Parameters:
    ///   - name: The file name inside `Vectors`.
    /// - Returns: The lines, trailing `\r` removed.
    /// - Throws: When the file cannot be read as UTF-8.
    static func lines(of name: String) throws -> [Substring] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
    }

    /// How many lines of a file start with `prefix`: a record count taken without the parser.
    ///
    /// - Parameters:
    ///   - prefix: The text that starts each record's first line.
    ///   - name: The file name inside `Vectors`.
    /// - Returns: The number of matching lines.
    /// - Throws: When the file cannot be read.
    static func count(linesStartingWith prefix: String, in name: String) throws -> Int {
        try lines(of: name).filter { $0.hasPrefix(prefix) }.count
    }

    /// Every `Len` / `Msg` / `MD` record of the NIST CAVP short-message file.
    ///
    /// - Returns: The vectors in file order.
    /// - Throws: ``ParseError`` on a malformed or incomplete record.
    static func nistShortMessages() throws -> [HashVector] {
        let records = try keyValueRecords(in: nistFile, fields: ["Len", "Msg", "MD"], skipping: ["["])
        return try records.map { record in
            let fail = { (reason: String) in ParseError(file: nistFile, line: record.line, reason: reason) }
            guard let bits = Int(record.values[0]), bits >= 0, bits % 8 == 0 else { throw fail("bad Len") }
            let message = try hexBytes(record.values[1], file: nistFile, line: record.line)
            // CAVP writes the empty message as one zero byte with Len = 0; Len says how many count.
            guard message.count >= bits / 8 else { throw fail("Msg shorter than Len") }
            let digest = try digestHex(record.values[2], file: nistFile, line: record.line)
            return HashVector(source: "NIST Len=\(bits)", message: Array(message.prefix(bits / 8)), digest: digest)
        }
    }

    /// Every `Case` / `Key` / `Data` / `MAC` record of the RFC 4231 file.
    ///
    /// - Returns: The vectors in file order.
    /// - Throws: ``ParseError`` on a malformed or incomplete record.
    static func rfc4231() throws -> [MACVector] {
        let records = try keyValueRecords(in: rfc4231File, fields: ["Case", "Key", "Data", "MAC"], skipping: [])
        return try records.map { record in
            MACVector(
                source: "RFC 4231 case \(record.values[0])",
                key: try hexBytes(record.values[1], file: rfc4231File, line: record.line),
                message: try hexBytes(record.values[2], file: rfc4231File, line: record.line),
                mac: try digestHex(record.values[3], file: rfc4231File, line: record.line))
        }
    }

    /// The `SHA256` and `HMAC` lines of the pseudo-random vector file.
    ///
    /// - Returns: The hash vectors and the MAC vectors, each in file order.
    /// - Throws: ``ParseError`` on any line that is neither a comment nor a well-formed record.
    static func randomVectors() throws -> (hashes: [HashVector], macs: [MACVector]) {
        var hashes: [HashVector] = []
        var macs: [MACVector] = []
        for (index, line) in try lines(of: randomFile).enumerated() {
            let number = index + 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ")
            func bytes(_ field: Substring) throws -> [UInt8] {
                field == "-" ? [] : try hexBytes(field, file: randomFile, line: number)
            }
            switch (fields.first, fields.count) {
            case ("SHA256", 3):
                hashes.append(
                    HashVector(
                        source: "\(randomFile):\(number)", message: try bytes(fields[1]),
                        digest: try digestHex(fields[2], file: randomFile, line: number)))
            case ("HMAC", 4):
                macs.append(
                    MACVector(
                        source: "\(randomFile):\(number)", key: try bytes(fields[1]), message: try bytes(fields[2]),
                        mac: try digestHex(fields[3], file: randomFile, line: number)))
            default:
                throw ParseError(file: randomFile, line: number, reason: "not a SHA256 or HMAC record")
            }
        }
        return (hashes, macs)
    }

    /// Decodes hex, either case, into bytes.
    ///
    /// - Parameters:
    ///   - hex: An even number of hex digits.
    ///   - file: The file name, for the error.
    ///   - line: The line number, for the error.
    /// - Returns: The bytes.
    /// - Throws: ``ParseError`` on an odd length or a non-hex character.
    static func hexBytes(_ hex: some StringProtocol, file: String = "hex", line: Int = 0) throws -> [UInt8] {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { throw ParseError(file: file, line: line, reason: "odd-length hex") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else {
                throw ParseError(file: file, line: line, reason: "not hex")
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    /// Formats bytes as lowercase hex, independently of MeshCrypto's own formatting.
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var characters: [UInt8] = []
        characters.reserveCapacity(2 * bytes.underestimatedCount)
        for byte in bytes {
            characters.append(digits[Int(byte >> 4)])
            characters.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: characters, as: UTF8.self)
    }

    // MARK: - Helpers

    private struct Record {
        var line: Int
        var values: [String]
    }

    /// Groups `Name = value` lines into records whose fields come in exactly the order given.
    private static func keyValueRecords(in file: String, fields: [String], skipping prefixes: [String]) throws
        -> [Record]
    {
        var records: [Record] = []
        var current: Record?
        for (index, rawLine) in try lines(of: file).enumerated() {
            let number = index + 1
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || prefixes.contains(where: { line.hasPrefix($0) }) { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw ParseError(file: file, line: number, reason: "expected 'Name = value'")
            }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            var record = current ?? Record(line: number, values: [])
            guard name == fields[record.values.count] else {
                throw ParseError(
                    file: file, line: number, reason: "expected \(fields[record.values.count]), found \(name)")
            }
            record.values.append(value)
            if record.values.count == fields.count {
                records.append(record)
                current = nil
            } else {
                current = record
            }
        }
        if let current {
            throw ParseError(file: file, line: current.line, reason: "incomplete record")
        }
        return records
    }

    /// Checks that a field is 32 bytes of lowercase hex and returns it.
    private static func digestHex(_ hex: some StringProtocol, file: String, line: Int) throws -> String {
        let text = String(hex)
        guard text.utf8.count == 64, text == text.lowercased(), try hexBytes(text, file: file, line: line).count == 32
        else { throw ParseError(file: file, line: line, reason: "not 32 bytes of lowercase hex") }
        return text
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
