// The GENI interface's default address, apart from the interface so that the CLI's option
// defaults do not load the PKI and XML signature modules.

export const DEFAULT_GENI_LISTEN = '127.0.0.1:8001';
