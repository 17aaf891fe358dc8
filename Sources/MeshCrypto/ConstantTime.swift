/// Whether two byte sequences are equal, in time that depends only on their lengths.
///
/// Every byte pair is XORed into an accumulator with no early exit, so the time taken does not
/// reveal where the first difference is. Sequences of different lengths are unequal at once; a
/// length is not treated as secret. Use it to check MACs, tokens and other secrets received from
/// a peer.
///
/// - Parameters:
///   - lhs: The first bytes, e.g. a MAC received from a peer.
///   - rhs: The second bytes, e.g. the MAC computed locally.
/// - Returns: `true` when both hold the same bytes in the same order.
public func constantTimeEquals<L: Collection, R: Collection>(_ lhs: L, _ rhs: R) -> Bool
where L.Element == UInt8, R.Element == UInt8 {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for (left, right) in zip(lhs, rhs) {
        difference |= left ^ right
    }
    return difference == 0
}
