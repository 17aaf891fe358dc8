#if canImport(CMeshSHA)
internal import CMeshSHA
#endif

// The bridge to our SHA-extension compression function in the optional `CMeshSHA` C target.
// MeshCrypto builds without it (declare no dependency on CMeshSHA): the accelerator then reports
// itself unavailable and every hasher uses the portable Swift compression function.

extension SHA256 {
    /// Whether this CPU has the SHA extensions our C compression function needs, asked once.
    static let acceleratorAvailable: Bool = {
        #if canImport(CMeshSHA)
        cmesh_sha256_shani_available() != 0
        #else
        false
        #endif
    }()

    /// Runs the SHA-extension compression function; call only when ``acceleratorAvailable``.
    ///
    /// - Parameters:
    ///   - state: The state words, updated in place.
    ///   - blocks: The first byte of `count` blocks; no alignment needed.
    ///   - count: How many blocks to compress.
    static func compressAccelerated(_ state: inout Words, _ blocks: UnsafeRawPointer, _ count: Int) {
        #if canImport(CMeshSHA)
        withUnsafeMutablePointer(to: &state) { words in
            // A homogeneous tuple's memory is bound to its element type.
            let first = UnsafeMutableRawPointer(words).assumingMemoryBound(to: UInt32.self)
            cmesh_sha256_compress_shani(first, blocks, count)
        }
        #else
        preconditionFailure("SHA256: built without CMeshSHA, so there is no accelerated compression")
        #endif
    }
}
