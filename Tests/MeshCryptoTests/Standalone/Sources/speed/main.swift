// MeshCrypto's X25519 and ChaCha20-Poly1305 speed in a plain release build, for speed.sh.
import Dispatch
import Foundation
import MeshCrypto

/// The best time per call of `body` over several rounds, in seconds.
func bestTime(rounds: Int = 7, calls: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<calls { try body() }
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(calls))
    }
    return best
}

let key = Curve25519.KeyAgreement.PrivateKey()
let peer = Curve25519.KeyAgreement.PrivateKey().publicKey
let agreement = try bestTime(rounds: 5, calls: 2_000) { _ = try key.sharedSecretFromKeyAgreement(with: peer) }
print(String(format: "x25519 %.0f ops/s (%.1f µs)", 1 / agreement, agreement * 1e6))

let size = 1 << 20
let message = Data(repeating: 7, count: size)
let symmetric = SymmetricKey(size: .bits256)
let seal = try bestTime(calls: 20) { _ = try ChaChaPoly.seal(message, using: symmetric) }
print(String(format: "chachapoly-seal %.0f MB/s", Double(size) / seal / 1e6))
let box = try ChaChaPoly.seal(message, using: symmetric)
let open = try bestTime(calls: 20) { _ = try ChaChaPoly.open(box, using: symmetric) }
print(String(format: "chachapoly-open %.0f MB/s", Double(size) / open / 1e6))
