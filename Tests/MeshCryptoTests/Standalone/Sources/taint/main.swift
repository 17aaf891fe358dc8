// Constant-time check under valgrind's memcheck: secrets come from malloc'd memory never
// written, so memcheck marks every bit derived from them "undefined" and reports any
// conditional jump, conditional move it cannot see through, or memory address that depends
// on them. The only reports expected are where a result is deliberately made public.
import Foundation
@_spi(Testing) import MeshCrypto

func undefinedBytes(_ count: Int) -> Data {
    let pointer = malloc(count)!  // never written: memcheck treats its bytes as secret taint
    return Data(bytesNoCopy: pointer, count: count, deallocator: .free)
}

let mode = CommandLine.arguments.dropFirst().first ?? "x25519"
switch mode {
case "x25519":
    // Secret scalar: PrivateKey(rawRepresentation:) runs the ladder on it with the base point.
    let key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: undefinedBytes(32))
    // Secret point too: the peer's key is public in real life, but the ladder must not care.
    let peer = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: undefinedBytes(32))
    let other = Curve25519.KeyAgreement.PrivateKey()
    _ = try? other.sharedSecretFromKeyAgreement(with: peer)  // reports expected only at the zero check
    _ = try? key.sharedSecretFromKeyAgreement(with: other.publicKey)
    print("x25519 done")
case "seal":
    let key = SymmetricKey(data: undefinedBytes(32))
    for length in [0, 1, 63, 64, 65, 300, 511, 512, 513, 5000] {
        let box = try ChaChaPoly.seal(
            undefinedBytes(length), using: key, nonce: ChaChaPoly.Nonce(), authenticating: undefinedBytes(length % 37))
        _ = box.combined.count
    }
    print("seal done")
case "open":
    // A box sealed under a secret key, opened: the only expected report is the tag verdict.
    let key = SymmetricKey(data: undefinedBytes(32))
    let box = try ChaChaPoly.seal(undefinedBytes(1000), using: key, authenticating: undefinedBytes(20))
    _ = try? ChaChaPoly.open(box, using: key, authenticating: undefinedBytes(20))
    print("open done")
case "portable":
    // The portable ChaCha20 and Poly1305 on secret keys and messages.
    let key = Array(undefinedBytes(32))
    for length in [1, 64, 100, 1000] {
        let stream = ChaChaPoly.chaCha20(key: key, counter: 1, nonce: Array(repeating: 0, count: 12),
                                         Array(undefinedBytes(length)), backend: .portable)
        _ = ChaChaPoly.poly1305(key: key, message: stream)
    }
    print("portable done")
default:
    print("modes: x25519 seal open portable")
}
