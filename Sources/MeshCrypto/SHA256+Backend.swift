extension SHA256 {
    /// Which compression function a hasher uses; for tests that must cover both.
    @_spi(Testing)
    public enum Backend: Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// The portable Swift compression function, available everywhere.
        case portable
        /// Our C compression function on the x86 SHA extensions.
        case accelerated

        /// Whether this CPU can run ``accelerated``.
        public static var acceleratedIsAvailable: Bool { SHA256.acceleratorAvailable }

        /// The backend `SHA256()` picks on this machine.
        public static var preferred: Backend { acceleratedIsAvailable ? .accelerated : .portable }

        public var description: String {
            switch self {
            case .portable: "portable"
            case .accelerated: "accelerated"
            }
        }
    }

    /// Creates a hasher that uses the given compression function.
    ///
    /// - Parameters:
    ///   - backend: The compression function; ``Backend/accelerated`` only where
    ///     ``Backend/acceleratedIsAvailable``.
    @_spi(Testing)
    public init(backend: Backend) {
        precondition(
            backend == .portable || Self.acceleratorAvailable,
            "SHA256: the accelerated backend needs a CPU with the SHA extensions")
        self.init(accelerated: backend == .accelerated)
    }

    /// The compression function this hasher uses.
    @_spi(Testing)
    public var backend: Backend { accelerated ? .accelerated : .portable }
}
