/// Formats bytes as lowercase hex, two digits per byte.
///
/// - Parameters:
///   - bytes: The bytes to format.
/// - Returns: A string of `2 * bytes.count` characters from `0-9a-f`.
func lowercaseHex(_ bytes: UnsafeRawBufferPointer) -> String {
    String(unsafeUninitializedCapacity: 2 * bytes.count) { characters in
        var index = 0
        for byte in bytes {
            characters[index] = hexDigit(byte >> 4)
            characters[index + 1] = hexDigit(byte & 0x0f)
            index += 2
        }
        return index
    }
}

/// The ASCII code of one lowercase hex digit for a value in 0...15.
@inline(__always)
private func hexDigit(_ value: UInt8) -> UInt8 {
    value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
}
