import Foundation

extension Noise {
    /// One token of a handshake pattern (section 7).
    package enum Token: String, Sendable, Hashable {
        case e, s, ee, es, se, ss, psk
    }

    /// A handshake pattern: the keys each side knows beforehand, then who sends which tokens.
    ///
    /// Patterns are written as in the specification, one message per line, `...` after the
    /// pre-messages:
    ///
    /// ```
    /// <- s
    /// ...
    /// -> e, es, s, ss
    /// <- e, ee, se
    /// ```
    package struct HandshakePattern: Sendable, Hashable {
        /// One line of a pattern: who sends it, and its tokens in order.
        package struct Message: Sendable, Hashable {
            /// `true` for `->` (initiator to responder), `false` for `<-`.
            package var fromInitiator: Bool
            package var tokens: [Token]
        }

        /// The pattern's name with its modifiers, e.g. `IKpsk2`.
        package let name: String
        /// The pre-message the initiator's side contributes (`-> s`), at most `e` and `s`.
        package let initiatorPreMessage: [Token]
        /// The pre-message the responder's side contributes (`<- s`).
        package let responderPreMessage: [Token]
        /// The handshake messages in order; they alternate, starting with the initiator.
        package let messages: [Message]

        /// Whether the pattern has `psk` modifiers, which make every `e` also a `MixKey`.
        package var isPresharedKeyHandshake: Bool { messages.contains { $0.tokens.contains(.psk) } }

        /// Whether only the initiator ever sends (patterns `N`, `K`, `X`).
        package var isOneWay: Bool { messages.count == 1 }

        /// The pattern named `name`, e.g. `XX`, `IKpsk2`, `NNpsk0+psk2`, `X1K1`.
        ///
        /// - Parameters:
        ///   - name: A fundamental, one-way or deferred pattern of the specification, optionally
        ///     followed by `psk<n>` modifiers joined with `+`.
        /// - Throws: ``Noise/Error/unsupportedProtocol(_:)`` for an unknown pattern or modifier.
        package init(named name: String) throws {
            let base = String(name.prefix { !$0.isLowercase })
            let modifierText = name.dropFirst(base.count)
            guard let text = Self.patterns[base] else { throw Error.unsupportedProtocol(name) }
            let (initiatorPre, responderPre, parsed) = try Self.parse(text, name: name)
            var messages = parsed
            if !modifierText.isEmpty {
                for modifier in modifierText.split(separator: "+", omittingEmptySubsequences: false) {
                    guard modifier.hasPrefix("psk"), let position = Int(modifier.dropFirst(3)),
                        position >= 0, position <= messages.count
                    else { throw Error.unsupportedProtocol(name) }
                    // psk0 opens the first message; pskN (N >= 1) closes message N.
                    if position == 0 {
                        messages[0].tokens.insert(.psk, at: 0)
                    } else {
                        messages[position - 1].tokens.append(.psk)
                    }
                }
            }
            self.name = name
            initiatorPreMessage = initiatorPre
            responderPreMessage = responderPre
            self.messages = messages
        }

        /// Reads a pattern written as in the specification.
        private static func parse(_ text: String, name: String) throws
            -> (initiator: [Token], responder: [Token], messages: [Message])
        {
            var lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            var initiatorPre: [Token] = []
            var responderPre: [Token] = []
            if let separator = lines.firstIndex(of: "...") {
                for line in lines[..<separator] {
                    let (fromInitiator, tokens) = try parseLine(line, name: name)
                    if fromInitiator { initiatorPre = tokens } else { responderPre = tokens }
                }
                lines.removeSubrange(...separator)
            }
            let messages = try lines.map { line in
                let (fromInitiator, tokens) = try parseLine(line, name: name)
                return Message(fromInitiator: fromInitiator, tokens: tokens)
            }
            for (index, message) in messages.enumerated() where message.fromInitiator != (index % 2 == 0) {
                throw Error.unsupportedProtocol(name)
            }
            return (initiatorPre, responderPre, messages)
        }

        private static func parseLine(_ line: String, name: String) throws -> (Bool, [Token]) {
            let fromInitiator: Bool
            if line.hasPrefix("->") {
                fromInitiator = true
            } else if line.hasPrefix("<-") {
                fromInitiator = false
            } else {
                throw Error.unsupportedProtocol(name)
            }
            let tokens = try line.dropFirst(2).split(separator: ",").map { word in
                guard let token = Token(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                    throw Error.unsupportedProtocol(name)
                }
                return token
            }
            return (fromInitiator, tokens)
        }

        /// The specification's patterns: one-way (7.4), fundamental interactive (7.5) and deferred (18.2).
        static let patterns: [String: String] = [
            // One-way
            "N": "<- s\n...\n-> e, es",
            "K": "-> s\n<- s\n...\n-> e, es, ss",
            "X": "<- s\n...\n-> e, es, s, ss",
            // Fundamental interactive
            "NN": "-> e\n<- e, ee",
            "NK": "<- s\n...\n-> e, es\n<- e, ee",
            "NX": "-> e\n<- e, ee, s, es",
            "KN": "-> s\n...\n-> e\n<- e, ee, se",
            "KK": "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se",
            "KX": "-> s\n...\n-> e\n<- e, ee, se, s, es",
            "XN": "-> e\n<- e, ee\n-> s, se",
            "XK": "<- s\n...\n-> e, es\n<- e, ee\n-> s, se",
            "XX": "-> e\n<- e, ee, s, es\n-> s, se",
            "IN": "-> e, s\n<- e, ee, se",
            "IK": "<- s\n...\n-> e, es, s, ss\n<- e, ee, se",
            "IX": "-> e, s\n<- e, ee, se, s, es",
            // Deferred
            "NK1": "<- s\n...\n-> e\n<- e, ee, es",
            "NX1": "-> e\n<- e, ee, s\n-> es",
            "X1N": "-> e\n<- e, ee\n-> s\n<- se",
            "X1K": "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se",
            "XK1": "<- s\n...\n-> e\n<- e, ee, es\n-> s, se",
            "X1K1": "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se",
            "X1X": "-> e\n<- e, ee, s, es\n-> s\n<- se",
            "XX1": "-> e\n<- e, ee, s\n-> es, s, se",
            "X1X1": "-> e\n<- e, ee, s\n-> es, s\n<- se",
            "K1N": "-> s\n...\n-> e\n<- e, ee\n-> se",
            "K1K": "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se",
            "KK1": "-> s\n<- s\n...\n-> e\n<- e, ee, se, es",
            "K1K1": "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se",
            "K1X": "-> s\n...\n-> e\n<- e, ee, s, es\n-> se",
            "KX1": "-> s\n...\n-> e\n<- e, ee, se, s\n-> es",
            "K1X1": "-> s\n...\n-> e\n<- e, ee, s\n-> se, es",
            "I1N": "-> e, s\n<- e, ee\n-> se",
            "I1K": "<- s\n...\n-> e, es, s\n<- e, ee\n-> se",
            "IK1": "<- s\n...\n-> e, s\n<- e, ee, se, es",
            "I1K1": "<- s\n...\n-> e, s\n<- e, ee, es\n-> se",
            "I1X": "-> e, s\n<- e, ee, s, es\n-> se",
            "IX1": "-> e, s\n<- e, ee, se, s\n-> es",
            "I1X1": "-> e, s\n<- e, ee, s\n-> se, es",
        ]
    }
}
