import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// `MeshText.escaped` and the logger that applies it to every line.
@Suite("escaping peer-controlled text")
struct EscapingTests {
    @Test("control characters, line separators and bidi overrides become \\u{..} escapes")
    func escapesWhatMovesTheCursor() {
        #expect(MeshText.escaped("\u{1B}[2J") == #"\u{1B}[2J"#)
        #expect(MeshText.escaped("a\nb") == #"a\u{A}b"#)
        #expect(MeshText.escaped("a\r\nb") == #"a\u{D}\u{A}b"#)
        #expect(MeshText.escaped("nul\u{0}") == #"nul\u{0}"#)
        #expect(MeshText.escaped("del\u{7F}") == #"del\u{7F}"#)
        #expect(MeshText.escaped("tab\there") == #"tab\u{9}here"#)
        #expect(MeshText.escaped("c1\u{85}\u{9B}") == #"c1\u{85}\u{9B}"#)
        #expect(MeshText.escaped("\u{2028}\u{2029}") == #"\u{2028}\u{2029}"#)
        #expect(MeshText.escaped("evil\u{202E}gpj.exe") == #"evil\u{202E}gpj.exe"#)
        #expect(MeshText.escaped("\u{202A}\u{202B}\u{202C}\u{202D}") == #"\u{202A}\u{202B}\u{202C}\u{202D}"#)
        #expect(MeshText.escaped("\u{2066}\u{2067}\u{2068}\u{2069}") == #"\u{2066}\u{2067}\u{2068}\u{2069}"#)
        // An OSC sequence that retitles the terminal, ended by BEL.
        #expect(MeshText.escaped("\u{1B}]0;pwned\u{7}") == #"\u{1B}]0;pwned\u{7}"#)
    }

    @Test("plain ASCII, letters of other scripts, emoji and neighbours of the escaped ranges pass unchanged")
    func leavesTextAlone() {
        let untouched = [
            "", "worker-1", "sensors/imu 42 {\"a\":1} \\u{1B} ~", "Grüße aus Köln", "日本語のトピック", "Ελληνικά",
            "emoji 🚀👩‍💻", "nbsp\u{A0}and soft\u{AD}hyphen", "© ® ¿ À", "em—dash … “quotes” • ‰ € ™",
            "\u{2027}\u{202F}\u{2065}\u{206A}", "arabic مرحبا hebrew שלום",
        ]
        for text in untouched {
            #expect(MeshText.escaped(text) == text, "\(text.debugDescription)")
        }
    }

    @Test("every scalar: escaped exactly when it is Cc, U+2028/2029 or a bidi control, and the result has none left")
    func everyScalarClassified() {
        var escapedCount = 0
        for value in UInt32(0)...0x2FFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let expected =
                scalar.properties.generalCategory == .control || value == 0x2028 || value == 0x2029
                || (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
            #expect(MeshText.needsEscaping(scalar) == expected, "U+\(String(value, radix: 16))")
            let text = "a\(Character(scalar))b"
            let result = MeshText.escaped(text)
            if expected {
                escapedCount += 1
                #expect(result == "a\\u{\(String(value, radix: 16, uppercase: true))}b")
            } else {
                #expect(result == text, "U+\(String(value, radix: 16))")
            }
            #expect(!result.unicodeScalars.contains(where: MeshText.needsEscaping))
        }
        // 65 Cc + 2 separators + 5 + 4 bidi controls.
        #expect(escapedCount == 76)
    }

    @Test("the logger escapes the whole line before its sink: a hostile name is one line with no escape codes")
    func loggerEscapes() {
        let lines = Mutex<[String]>([])
        let logger = MeshLogger(label: "coord\u{1B}[31m", level: .info) { line in lines.withLock { $0.append(line) } }
        logger.warning("rejected connection from 127.0.0.1:5000: node name \"\u{1B}[2J\nFAKE 0.0.0.0 info [x] all good\u{202E}\"")
        logger.info("plain line with Grüße")
        let written = lines.withLock { $0 }
        #expect(written.count == 2)
        let hostile = written[0]
        #expect(!hostile.contains("\u{1B}") && !hostile.contains("\n") && !hostile.contains("\u{202E}"), "\(hostile.debugDescription)")
        #expect(hostile.contains(#"[coord\u{1B}[31m]"#))
        #expect(hostile.hasSuffix(#"node name "\u{1B}[2J\u{A}FAKE 0.0.0.0 info [x] all good\u{202E}""#), "\(hostile)")
        #expect(written[1].hasSuffix("[coord\\u{1B}[31m] plain line with Grüße"))
    }

    @Test("a long hostile message is cut first and escaped after: the line stays bounded")
    func loggerBoundsEscapedLines() {
        let lines = Mutex<[String]>([])
        let logger = MeshLogger(label: "x", level: .info) { line in lines.withLock { $0.append(line) } }
        logger.info(String(repeating: "\u{1B}", count: 100_000))
        let line = lines.withLock { $0 }.first ?? ""
        #expect(!line.contains("\u{1B}"))
        #expect(line.utf8.count < MeshLogger.maximumMessageBytes * 6 + 200, "\(line.utf8.count) bytes")
        #expect(line.hasSuffix("more bytes)"))
    }
}
