// PEM text, without a certificate library (the GENI PKI's loads only with GENI).

/** The certificates of a PEM bundle, each as its own PEM text. */
export function splitPemBundle(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
