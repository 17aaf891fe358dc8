import Mesh
import MeshTooling

/// A place in a launch file, counted from 1 (columns in Unicode scalars).
package struct TextPosition: Sendable, Hashable, CustomStringConvertible {
    package var line: Int
    package var column: Int

    package init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    package var description: String { "\(line):\(column)" }
}

/// What is wrong with a launch file, and where: `FILE:LINE:COLUMN: MESSAGE`.
package struct LaunchFileError: Error, Sendable, Equatable, CustomStringConvertible {
    package var file: String
    /// `nil` when the problem is not at one place (the file cannot be read, for example).
    package var position: TextPosition?
    package var message: String

    package init(file: String, position: TextPosition?, message: String) {
        self.file = file
        self.position = position
        self.message = message
    }

    package var description: String {
        guard let position else { return "\(file): \(message)" }
        return "\(file):\(position.line):\(position.column): \(message)"
    }
}

/// One value read from a launch file (YAML or JSON), with where it starts.
///
/// Scalars stay text: whether `3` is a number is for the schema to say, so `count: "3"` (a
/// string) and `count: 3` can be told apart, as JSON tells them apart.
struct DocumentNode: Sendable, Equatable {
    enum Content: Sendable, Equatable {
        /// Text; `quoted` when it was written in quotes (then it is always a string).
        case scalar(String, quoted: Bool)
        case sequence([DocumentNode])
        /// Keys in file order; duplicates are refused when reading.
        case mapping([Entry])
        /// Nothing after `key:`, or `null` / `~`.
        case empty
    }

    struct Entry: Sendable, Equatable {
        var key: String
        var keyPosition: TextPosition
        var value: DocumentNode
    }

    var content: Content
    var position: TextPosition

    /// "a list", "a mapping", "a string", ... for error messages.
    var kindDescription: String {
        switch content {
        case .scalar(let text, let quoted): return quoted ? "the string \"\(text.prefix(40))\"" : "\"\(text.prefix(40))\""
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .empty: return "nothing"
        }
    }
}

/// Reads the YAML a launch file needs, and JSON, into ``DocumentNode``s.
///
/// Supported: block mappings and sequences (by indentation, spaces only), flow `[a, b]` and
/// `{k: v}` (over several lines too, which is how JSON reads), plain, 'single-quoted' and
/// "double-quoted" scalars (with JSON's and YAML's escapes), `#` comments and one leading `---`.
/// Everything else (tabs in indentation, anchors, aliases, tags, block scalars `|` `>`, complex
/// keys, several documents, multi-line plain scalars) is an error that says where and what.
struct DocumentParser {
    private let bytes: [UInt8]
    private let file: String
    private var index = 0
    /// Where each line starts, for turning an index into a line and column.
    private let lineStarts: [Int]
    /// The indentation of the line the cursor is at the content of; `nil` at the end of the file.
    private var lineIndent: Int?
    /// How many collections the cursor is inside: bounded, so hostile nesting cannot exhaust the stack.
    private var depth = 0
    static let maximumDepth = 64

    /// Reads one document.
    ///
    /// - Throws: ``LaunchFileError`` at the first thing it cannot read.
    static func parse(_ text: String, file: String) throws(LaunchFileError) -> DocumentNode {
        var parser = DocumentParser(text: text, file: file)
        return try parser.document()
    }

    private init(text: String, file: String) {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // a byte-order mark
        self.bytes = bytes
        self.file = file
        var starts = [0]
        for (offset, byte) in bytes.enumerated() where byte == UInt8(ascii: "\n") { starts.append(offset + 1) }
        lineStarts = starts
    }

    // MARK: Positions and errors

    private func position(_ at: Int) -> TextPosition {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= at { low = middle } else { high = middle - 1 }
        }
        let start = lineStarts[low]
        let end = min(at, bytes.count)
        // Columns count Unicode scalars: skip UTF-8 continuation bytes.
        let column = bytes[start..<max(start, end)].filter { $0 & 0xC0 != 0x80 }.count + 1
        return TextPosition(line: low + 1, column: column)
    }

    private func error(_ message: String, at: Int? = nil) -> LaunchFileError {
        LaunchFileError(file: file, position: position(at ?? index), message: message)
    }

    // MARK: Characters

    private var atEnd: Bool { index >= bytes.count }
    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }
    private func peek(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }

    private static func isBreak(_ byte: UInt8?) -> Bool {
        byte == nil || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
    }
    private static func isBlank(_ byte: UInt8?) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
    private static func isBlankOrBreak(_ byte: UInt8?) -> Bool { isBlank(byte) || isBreak(byte) }
    private static func isFlowIndicator(_ byte: UInt8?) -> Bool {
        guard let byte else { return false }
        return "[]{},".utf8.contains(byte)
    }

    /// Skips spaces and tabs, and a comment, up to the end of the line; returns whether the line ended.
    @discardableResult
    private mutating func skipToEndOfLine() -> Bool {
        let start = index
        while DocumentParser.isBlank(current) { index += 1 }
        // A '#' starts a comment at the start of a line or after a blank.
        if current == UInt8(ascii: "#"), index == start ? isAtLineStartOrAfterBlank(index) : true {
            while !DocumentParser.isBreak(current) { index += 1 }
        }
        return DocumentParser.isBreak(current)
    }

    private func isAtLineStartOrAfterBlank(_ at: Int) -> Bool {
        at == 0 || DocumentParser.isBlankOrBreak(bytes[at - 1])
    }

    /// From the end of a line, moves to the content of the next line that has any, setting
    /// ``lineIndent`` (`nil` at the end of the file).
    ///
    /// - Throws: at a tab used for indentation.
    private mutating func nextContentLine() throws(LaunchFileError) {
        while true {
            while !DocumentParser.isBreak(current) { index += 1 }  // the rest is blank or a comment
            if atEnd {
                lineIndent = nil
                return
            }
            if current == UInt8(ascii: "\r") { index += 1 }
            if current == UInt8(ascii: "\n") { index += 1 }
            if try enterLine() { return }
        }
    }

    /// At the start of a line: skips its indentation; `true` when the line has content.
    private mutating func enterLine() throws(LaunchFileError) -> Bool {
        let start = index
        while current == UInt8(ascii: " ") { index += 1 }
        if current == UInt8(ascii: "\t") {
            let tab = index
            if skipToEndOfLine() { return false }  // a blank line may hold tabs
            throw error("a tab in the indentation; YAML indents with spaces only", at: tab)
        }
        if current == UInt8(ascii: "#") || DocumentParser.isBreak(current) { return false }
        lineIndent = index - start
        return true
    }

    // MARK: Document and block structure

    private mutating func document() throws(LaunchFileError) -> DocumentNode {
        if try !enterLine() { try nextContentLine() }
        if lineIndent != nil, isMarker("---") {
            index += 3
            guard skipToEndOfLine() else { throw error("expected a new line after '---'") }
            try nextContentLine()
        }
        guard let indent = lineIndent else {
            throw LaunchFileError(file: file, position: nil, message: "the file is empty")
        }
        let root = try blockNode(indent: indent)
        if lineIndent != nil {
            if isMarker("---") || isMarker("...") {
                throw error("only one document is allowed in a launch file")
            }
            throw error("unexpected content: it is indented less than the first line of the file")
        }
        return root
    }

    /// `---` or `...` at the start of a line, alone on it.
    private func isMarker(_ marker: String) -> Bool {
        let marker = Array(marker.utf8)
        guard index + marker.count <= bytes.count, lineIndent == 0 else { return false }
        return Array(bytes[index..<index + marker.count]) == marker
            && DocumentParser.isBlankOrBreak(peek(marker.count))
    }

    /// A node whose first line has its content at the cursor, indented `indent`. Returns with
    /// the cursor at the next content line.
    private mutating func blockNode(indent: Int) throws(LaunchFileError) -> DocumentNode {
        try enter()
        defer { depth -= 1 }
        if isSequenceDash() { return try blockSequence(indent: indent) }
        if try isMappingKeyAhead() { return try blockMapping(indent: indent) }
        let node = try inlineValue(flow: false)
        try endOfLine(after: "the value")
        return node
    }

    private func isSequenceDash() -> Bool {
        current == UInt8(ascii: "-") && DocumentParser.isBlankOrBreak(peek(1))
    }

    /// Whether the line from the cursor reads `KEY: ...`.
    private mutating func isMappingKeyAhead() throws(LaunchFileError) -> Bool {
        let saved = index
        defer { index = saved }
        switch current {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            _ = try quotedScalar()
            while DocumentParser.isBlank(current) { index += 1 }
            return current == UInt8(ascii: ":")
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            return false
        default:
            while !DocumentParser.isBreak(current) {
                if current == UInt8(ascii: ":"), DocumentParser.isBlankOrBreak(peek(1)) { return true }
                if current == UInt8(ascii: "#"), isAtLineStartOrAfterBlank(index) { return false }
                index += 1
            }
            return false
        }
    }

    private mutating func blockMapping(indent: Int) throws(LaunchFileError) -> DocumentNode {
        let start = position(index)
        var entries: [DocumentNode.Entry] = []
        var seen: Set<String> = []
        while true {
            let keyStart = index
            let key = try mappingKey()
            guard !seen.contains(key) else { throw error("duplicate key \"\(key)\"", at: keyStart) }
            seen.insert(key)
            index += 1  // the ':'
            let value: DocumentNode
            if skipToEndOfLine() {
                let after = position(index)
                try nextContentLine()
                if let next = lineIndent, next > indent {
                    value = try blockNode(indent: next)
                } else if let next = lineIndent, next == indent, isSequenceDash() {
                    value = try blockSequence(indent: indent)  // "key:\n- a": a list may sit at the key's indentation
                } else {
                    value = DocumentNode(content: .empty, position: after)
                }
            } else {
                value = try inlineValue(flow: false)
                try endOfLine(after: "the value of \"\(key)\"")
            }
            entries.append(.init(key: key, keyPosition: position(keyStart), value: value))
            guard let next = lineIndent, next >= indent else { break }
            if next > indent {
                throw error("unexpected indentation: this line is indented more than \"\(key)\" above it but is not its value")
            }
            if isSequenceDash() { throw error("expected \"key: value\" here, found a list item") }
            if isMarker("---") || isMarker("...") { break }  // the document reports it
        }
        return DocumentNode(content: .mapping(entries), position: start)
    }

    /// Reads `KEY` and leaves the cursor at the ':' after it.
    private mutating func mappingKey() throws(LaunchFileError) -> String {
        let start = index
        switch current {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            let key = try quotedScalar()
            while DocumentParser.isBlank(current) { index += 1 }
            guard current == UInt8(ascii: ":") else { throw error("expected ':' after the key") }
            return key
        case UInt8(ascii: "?") where DocumentParser.isBlankOrBreak(peek(1)):
            throw error("complex keys ('? ') are not supported")
        default:
            try refuseUnsupported()
            while !(current == UInt8(ascii: ":") && DocumentParser.isBlankOrBreak(peek(1))) {
                if DocumentParser.isBreak(current) || (current == UInt8(ascii: "#") && isAtLineStartOrAfterBlank(index)) {
                    index = start
                    let text = String(decoding: bytes[start..<lineEnd()], as: UTF8.self)
                    throw error("expected \"key: value\", found \"\(text.prefix(40))\"")
                }
                index += 1
            }
            var end = index
            while end > start, DocumentParser.isBlank(bytes[end - 1]) { end -= 1 }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
    }

    private func lineEnd() -> Int {
        var end = index
        while end < bytes.count, !DocumentParser.isBreak(bytes[end]) { end += 1 }
        return end
    }

    private mutating func blockSequence(indent: Int) throws(LaunchFileError) -> DocumentNode {
        let start = position(index)
        var items: [DocumentNode] = []
        while true {
            index += 1  // the '-'
            if skipToEndOfLine() {
                let after = position(index)
                try nextContentLine()
                if let next = lineIndent, next > indent {
                    items.append(try blockNode(indent: next))
                } else {
                    items.append(DocumentNode(content: .empty, position: after))
                }
            } else {
                // "- key: value" and "- - x": the rest of the line is a node at its own column.
                let column = index - lineStartIndex()
                lineIndent = column
                items.append(try blockNode(indent: column))
            }
            guard let next = lineIndent, next >= indent else { break }
            if next > indent { throw error("unexpected indentation inside a list") }
            guard isSequenceDash() else { break }  // "key:\n- a\nnext: b": the parent mapping goes on
        }
        return DocumentNode(content: .sequence(items), position: start)
    }

    private func lineStartIndex() -> Int {
        var start = index
        while start > 0, bytes[start - 1] != UInt8(ascii: "\n") { start -= 1 }
        return start
    }

    /// After a value on a line: only blanks and a comment may follow; moves to the next content line.
    private mutating func endOfLine(after what: String) throws(LaunchFileError) {
        guard skipToEndOfLine() else {
            if current == UInt8(ascii: ":") {
                throw error("unexpected ':' after \(what); a mapping must start on its own line, or quote the value")
            }
            throw error("unexpected text after \(what)")
        }
        try nextContentLine()
    }

    // MARK: Values on one line, and flow collections

    /// Refuses YAML this reader does not support, at the cursor.
    private func refuseUnsupported() throws(LaunchFileError) {
        switch current {
        case UInt8(ascii: "&"): throw error("anchors (&) are not supported")
        case UInt8(ascii: "*"): throw error("aliases (*) are not supported")
        case UInt8(ascii: "!"): throw error("tags (!) are not supported")
        case UInt8(ascii: "|"), UInt8(ascii: ">"):
            throw error("block scalars (| and >) are not supported; write the value on one line, in quotes if needed")
        case UInt8(ascii: "%"): throw error("directives (%) are not supported")
        case UInt8(ascii: "@"), UInt8(ascii: "`"): throw error("a plain value cannot start with '@' or '`'; quote it")
        default: return
        }
    }

    /// A scalar or flow collection starting at the cursor, ending on this line (flow collections
    /// may go on over several lines).
    private mutating func enter() throws(LaunchFileError) {
        depth += 1
        if depth > DocumentParser.maximumDepth {
            throw error("nested more than \(DocumentParser.maximumDepth) levels deep")
        }
    }

    private mutating func inlineValue(flow: Bool) throws(LaunchFileError) -> DocumentNode {
        try enter()
        defer { depth -= 1 }
        let start = position(index)
        switch current {
        case UInt8(ascii: "["): return try flowSequence()
        case UInt8(ascii: "{"): return try flowMapping()
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            return DocumentNode(content: .scalar(try quotedScalar(), quoted: true), position: start)
        case UInt8(ascii: "-") where DocumentParser.isBlankOrBreak(peek(1)):
            throw error("a list item cannot start here; put the list on its own lines or write [a, b]")
        default:
            try refuseUnsupported()
            let text = plainScalar(flow: flow)
            if ["null", "Null", "NULL", "~"].contains(text) { return DocumentNode(content: .empty, position: start) }
            return DocumentNode(content: .scalar(text, quoted: false), position: start)
        }
    }

    /// An unquoted scalar: up to the end of the line, a comment, or ": "; in flow context also
    /// up to `,` `[` `]` `{` `}`.
    private mutating func plainScalar(flow: Bool) -> String {
        let start = index
        while !DocumentParser.isBreak(current) {
            if current == UInt8(ascii: ":"),
                DocumentParser.isBlankOrBreak(peek(1)) || (flow && DocumentParser.isFlowIndicator(peek(1)))
            {
                break
            }
            if current == UInt8(ascii: "#"), index > start, DocumentParser.isBlank(bytes[index - 1]) { break }
            if flow, DocumentParser.isFlowIndicator(current) { break }
            index += 1
        }
        var end = index
        while end > start, DocumentParser.isBlank(bytes[end - 1]) { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// Blanks, line breaks and comments between the parts of a flow collection.
    private mutating func skipFlowSpace() {
        while let byte = current {
            if DocumentParser.isBlankOrBreak(byte) {
                index += 1
            } else if byte == UInt8(ascii: "#"), isAtLineStartOrAfterBlank(index) {
                while !DocumentParser.isBreak(current) { index += 1 }
            } else {
                return
            }
        }
    }

    private mutating func flowSequence() throws(LaunchFileError) -> DocumentNode {
        let open = index
        index += 1
        var items: [DocumentNode] = []
        while true {
            skipFlowSpace()
            guard let byte = current else { throw error("unclosed '[': no ']' before the end of the file", at: open) }
            if byte == UInt8(ascii: "]") { break }
            let item = try inlineValue(flow: true)
            if case .scalar(let text, false) = item.content, text.isEmpty {
                throw error("expected a value in the list, found '\(Character(UnicodeScalar(byte)))'")
            }
            items.append(item)
            skipFlowSpace()
            if current == UInt8(ascii: ",") {
                index += 1
            } else if current == UInt8(ascii: "]") {
                break
            } else if atEnd {
                throw error("unclosed '[': no ']' before the end of the file", at: open)
            } else {
                throw error("expected ',' or ']' in the list that starts at \(position(open))")
            }
        }
        index += 1
        return DocumentNode(content: .sequence(items), position: position(open))
    }

    private mutating func flowMapping() throws(LaunchFileError) -> DocumentNode {
        let open = index
        index += 1
        var entries: [DocumentNode.Entry] = []
        var seen: Set<String> = []
        while true {
            skipFlowSpace()
            guard let byte = current else { throw error("unclosed '{': no '}' before the end of the file", at: open) }
            if byte == UInt8(ascii: "}") { break }
            let keyStart = index
            let keyNode = try inlineValue(flow: true)
            guard case .scalar(let key, let quoted) = keyNode.content, quoted || !key.isEmpty else { throw error("expected a key in the mapping that starts at \(position(open))", at: keyStart) }
            guard !seen.contains(key) else { throw error("duplicate key \"\(key)\"", at: keyStart) }
            seen.insert(key)
            skipFlowSpace()
            guard current == UInt8(ascii: ":") else {
                throw error("expected ':' after the key \"\(key)\"")
            }
            index += 1
            skipFlowSpace()
            let value: DocumentNode
            if current == UInt8(ascii: ",") || current == UInt8(ascii: "}") {
                value = DocumentNode(content: .empty, position: position(index))
            } else {
                guard !atEnd else { throw error("unclosed '{': no '}' before the end of the file", at: open) }
                value = try inlineValue(flow: true)
            }
            entries.append(.init(key: key, keyPosition: position(keyStart), value: value))
            skipFlowSpace()
            if current == UInt8(ascii: ",") {
                index += 1
            } else if current == UInt8(ascii: "}") {
                break
            } else if atEnd {
                throw error("unclosed '{': no '}' before the end of the file", at: open)
            } else {
                throw error("expected ',' or '}' in the mapping that starts at \(position(open))")
            }
        }
        index += 1
        return DocumentNode(content: .mapping(entries), position: position(open))
    }

    // MARK: Quoted scalars

    /// A 'single-' or "double-quoted" scalar on one line; leaves the cursor after the closing quote.
    private mutating func quotedScalar() throws(LaunchFileError) -> String {
        let open = index
        let quote = bytes[index]
        index += 1
        var text: [UInt8] = []
        while true {
            guard let byte = current, !DocumentParser.isBreak(byte) else {
                let mark = quote == UInt8(ascii: "\"") ? "\"" : "'"
                throw error("unclosed quote: the string has no closing \(mark) on its line", at: open)
            }
            index += 1
            if quote == UInt8(ascii: "'") {
                if byte == UInt8(ascii: "'") {
                    if current == UInt8(ascii: "'") {
                        text.append(byte)
                        index += 1
                        continue
                    }
                    break
                }
                text.append(byte)
                continue
            }
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                try escape(into: &text)
            } else {
                text.append(byte)
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// After a backslash in a double-quoted scalar.
    private mutating func escape(into text: inout [UInt8]) throws(LaunchFileError) {
        let at = index - 1
        guard let byte = current, !DocumentParser.isBreak(byte) else {
            throw error("unclosed quote: a '\\' ends the line", at: at)
        }
        index += 1
        let simple: [UInt8: String] = [
            UInt8(ascii: "n"): "\n", UInt8(ascii: "t"): "\t", UInt8(ascii: "r"): "\r", UInt8(ascii: "\""): "\"",
            UInt8(ascii: "\\"): "\\", UInt8(ascii: "/"): "/", UInt8(ascii: "0"): "\0", UInt8(ascii: "b"): "\u{08}",
            UInt8(ascii: "f"): "\u{0C}", UInt8(ascii: "a"): "\u{07}", UInt8(ascii: "v"): "\u{0B}",
            UInt8(ascii: "e"): "\u{1B}", UInt8(ascii: " "): " ",
        ]
        if let replacement = simple[byte] {
            text += Array(replacement.utf8)
            return
        }
        let digits: Int
        switch byte {
        case UInt8(ascii: "x"): digits = 2
        case UInt8(ascii: "u"): digits = 4
        case UInt8(ascii: "U"): digits = 8
        default: throw error("unknown escape '\\\(Character(UnicodeScalar(byte)))' in a double-quoted string", at: at)
        }
        var value = try hexDigits(digits, escapeAt: at)
        if digits == 4, (0xD800...0xDBFF).contains(value), current == UInt8(ascii: "\\"), peek(1) == UInt8(ascii: "u") {
            // A JSON surrogate pair: "\ud83d\ude00".
            index += 2
            let low = try hexDigits(4, escapeAt: at)
            guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid surrogate pair in a \\u escape", at: at) }
            value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(value) else { throw error("\\u escape names no character", at: at) }
        text += Array(String(Character(scalar)).utf8)
    }

    private mutating func hexDigits(_ count: Int, escapeAt: Int) throws(LaunchFileError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<count {
            guard let byte = current, let digit = UInt32(String(UnicodeScalar(byte)), radix: 16) else {
                throw error("expected \(count) hex digits in the escape", at: escapeAt)
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }
}
