/**
 * The student's side of enrolment (steps 1–2) and the student's home directory.
 *
 * A home holds `student.key` (PKCS#8, 0600), `student.cer` (cert 2) and `cuhk.cer` (the root it
 * trusts). The key is written before the CSR is sent, so a failed enrolment loses nothing and a
 * retry reuses it.
 */

import {
  CA_MAX_FRAME,
  CA_READ_TIMEOUT_MS,
  caProtocol,
  codeKey,
  enrolmentBinding,
} from "./protocol.ts";
import {
  assertPrivateFile,
  ensureDir,
  errorMessage,
  exists,
  type HostPort,
  readTextFile,
  writeFileAtomic,
  writeSecretFile,
} from "../runtime/mod.ts";
import { Channel, FramedStream } from "../wire/mod.ts";
import {
  type Certificate,
  CertificateError,
  certificatePem,
  type Crl,
  CrlMemory,
  der,
  importSigningKey,
  parseCertificate,
  parseCrl,
  samePublicKey,
  signRsa,
  verifyCertificate,
  verifyCrl,
  verifyRsa,
} from "../pki/mod.ts";

export const KEY_FILE = "student.key";
export const CERT_FILE = "student.cer";
export const ROOT_FILE = "cuhk.cer";

export function homePaths(home: string): { key: string; cert: string; root: string } {
  return { key: `${home}/${KEY_FILE}`, cert: `${home}/${CERT_FILE}`, root: `${home}/${ROOT_FILE}` };
}

async function connect(
  ca: HostPort,
  timeoutMs: number,
): Promise<Channel<typeof caProtocol.messages>> {
  const conn = await Deno.connect({ hostname: ca.hostname, port: ca.port }).catch((err) => {
    throw new Error(`Cannot reach the CA at ${ca.hostname}:${ca.port}: ${err.message}`);
  });
  return new Channel(
    caProtocol,
    new FramedStream(conn, { maxFrame: CA_MAX_FRAME, readTimeoutMs: timeoutMs }),
  );
}

export interface EnrolOptions {
  ca: HostPort;
  sid: string;
  /** The one-time enrolment code ("" for the seeds' open enrolment); it never leaves this process. */
  code: string;
  /** DER PKCS#10. */
  csr: Uint8Array;
  /** DER SubjectPublicKeyInfo the certificate must carry. */
  publicKey: Uint8Array;
  root: Certificate;
  timeoutMs?: number;
}

/**
 * Sends the CSR (step 1), receives cert 2 (step 2) and checks it: signed by the trusted root, for
 * this ID, with client authentication, carrying the key of the CSR.
 */
export async function requestCertificate(options: EnrolOptions): Promise<Certificate> {
  const channel = await connect(options.ca, options.timeoutMs ?? CA_READ_TIMEOUT_MS);
  try {
    // The code stays here: only its binding to this ID and this CSR is sent.
    const binding = options.code === ""
      ? new Uint8Array(0)
      : await enrolmentBinding(await codeKey(options.code), options.sid, options.csr);
    await channel.send("csr", { sid: options.sid, binding, csr: options.csr });
    const reply = await channel.receive(["certificate"]);
    const cert = parseCertificate(reply.certificate, "cert 2 from the CA");
    await verifyCertificate(cert, {
      root: options.root,
      purpose: "clientAuth",
      expectedCommonName: options.sid,
      keyEncipherment: true,
    });
    // check: cert2-carries-csr-key tests/ca/negative_test.ts
    if (!samePublicKey(cert, options.publicKey)) {
      throw new CertificateError("Cert 2 from the CA does not carry the key of this CSR");
    }
    return cert;
  } finally {
    channel.close();
  }
}

/** Fetches the CA's current CRL and checks it against the root. */
export async function fetchCrl(
  ca: HostPort,
  root: Certificate,
  timeoutMs = CA_READ_TIMEOUT_MS,
): Promise<Crl> {
  const channel = await connect(ca, timeoutMs);
  try {
    await channel.send("crlRequest", {});
    const crl = parseCrl((await channel.receive(["crl"])).crl);
    await verifyCrl(crl, root);
    return crl;
  } finally {
    channel.close();
  }
}

/** Loads a trusted root from a file, with an error that says which file. */
export async function loadRoot(path: string): Promise<Certificate> {
  return parseCertificate(
    await readTextFile(path, "the CA root certificate"),
    `root certificate ${path}`,
  );
}

export interface StudentIdentity {
  sid: string;
  cert: Certificate;
  keyPem: string;
  root: Certificate;
  home: string;
}

/** In a student's home: the newest CRL the student has seen stapled by a server. */
export const NEWEST_CRL_FILE = "newest-crl.der";

/**
 * Where a student keeps the newest CRL it has seen (`CrlMemory`): Blackboard and Bob cannot staple
 * an older one to this student, from before their own revocation.
 */
export function crlMemoryOf(identity: { home: string; root: Certificate }): CrlMemory {
  return new CrlMemory(`${identity.home}/${NEWEST_CRL_FILE}`, identity.root);
}

/** Loads a student's key, certificate and trusted root from its home. */
export async function loadIdentity(home: string): Promise<StudentIdentity> {
  const paths = homePaths(home);
  if (!(await exists(paths.cert))) {
    throw new Error(`No certificate in ${home}: run 'student enroll' first`);
  }
  await assertPrivateFile(paths.key);
  const keyPem = await readTextFile(paths.key, "the student's private key");
  const cert = parseCertificate(
    await readTextFile(paths.cert, "the student's certificate"),
    paths.cert,
  );
  await assertKeyOfCertificate(keyPem, paths.key, cert, paths.cert);
  const root = await loadRoot(paths.root);
  const sid = cert.subjectName.getField("2.5.4.3")[0] ?? "";
  return { sid, cert, keyPem, root, home };
}

const KEY_CHECK = new TextEncoder().encode(
  "secure-channel-lab: is this the key of the certificate?",
);

/**
 * Checks at load, before anything is sent, that `keyPem` parses and is the private half of
 * `cert`: a signature made with it verifies under the certificate's public key. A truncated or
 * damaged key file, or the key of another certificate, is one clear error naming both files
 * (instead of a failure deep inside a handshake).
 */
export async function assertKeyOfCertificate(
  keyPem: string,
  keyPath: string,
  cert: Certificate,
  certPath: string,
): Promise<void> {
  let signature: Uint8Array;
  try {
    signature = await signRsa(await importSigningKey(keyPem), KEY_CHECK);
  } catch (err) {
    throw new CertificateError(
      `The private key ${keyPath} cannot be read (truncated or damaged? ${
        errorMessage(err)
      }): restore it, or enrol again with a new home`,
    );
  }
  // check: student-key-matches-certificate tests/blackboard/cli_test.ts
  if (!(await verifyRsa(cert, signature, KEY_CHECK).catch(() => false))) {
    throw new CertificateError(
      `The private key ${keyPath} is not the key of the certificate ${certPath}: restore the right key, or enrol again with a new home`,
    );
  }
}

/** Writes the key (0600) into a home, creating it (0700). */
export async function storeKey(home: string, keyPem: string): Promise<void> {
  await ensureDir(home, 0o700);
  await writeSecretFile(homePaths(home).key, keyPem);
}

/** Writes cert 2 and the trusted root into a home. */
export async function storeCertificate(
  home: string,
  cert: Certificate,
  root: Certificate,
): Promise<void> {
  const paths = homePaths(home);
  await writeFileAtomic(paths.root, certificatePem(root));
  await writeFileAtomic(paths.cert, certificatePem(cert));
}

export { der };
