//! Cosign public key files: the PEM block and the kinds of key
//! containers/image verifies.

use spki::der::Decode;

/// Parses a cosign public key file: one PEM block `PUBLIC KEY` holding a
/// SubjectPublicKeyInfo of an ECDSA (P-256, P-384, P-521), Ed25519 or RSA
/// key, the kinds containers/image verifies. Returns the PEM re-encoded and
/// the key's kind; the error names what the file is instead.
pub fn parse_public_key(bytes: &[u8]) -> Result<(String, &'static str), String> {
    use spki::der::pem::{self, LineEnding};
    use spki::ObjectIdentifier as Oid;
    const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
    const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");

    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM text file".to_string())?;
    let trimmed = text.trim();
    let (label, der) = pem::decode_vec(trimmed.as_bytes()).map_err(|e| {
        format!("not a PEM public key (cosign.pub's -----BEGIN PUBLIC KEY----- block): {e}")
    })?;
    if label.contains("PRIVATE") {
        return Err(format!(
            "a private key ({label}): give the public half (cosign.pub), never the signing key"
        ));
    }
    if label != "PUBLIC KEY" {
        return Err(format!(
            "a PEM {label:?} block, not a PUBLIC KEY (cosign.pub's format)"
        ));
    }
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&der)
        .map_err(|e| format!("not a public key (SubjectPublicKeyInfo): {e}"))?;
    let key_len = spki.subject_public_key.raw_bytes().len();
    let algorithm = match spki.algorithm.oid {
        EC => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("an EC key without a named curve: {e}"))?;
            // Uncompressed points: 0x04, then x and y.
            match (curve, key_len) {
                (P256, 65) => "ECDSA P-256",
                (P384, 97) => "ECDSA P-384",
                (P521, 133) => "ECDSA P-521",
                (P256 | P384 | P521, n) => {
                    return Err(format!(
                        "an EC public key of {n} bytes, not an uncompressed point of its curve"
                    ))
                }
                (c, _) => return Err(format!("an EC key on curve {c}, not P-256, P-384 or P-521")),
            }
        }
        ED25519 if key_len == 32 => "Ed25519",
        ED25519 => return Err(format!("an Ed25519 public key of {key_len} bytes, not 32")),
        RSA => "RSA",
        other => {
            return Err(format!(
                "a public key of algorithm {other}, not ECDSA, Ed25519 or RSA"
            ))
        }
    };
    let pem = pem::encode_string("PUBLIC KEY", LineEnding::LF, &der)
        .map_err(|e| format!("re-encoding the key: {e}"))?;
    Ok((pem, algorithm))
}
