/**
 * Micro-benchmarks of the hot paths every system shares (`deno task bench`): message codec,
 * per-chunk MAC and AEAD, and the public-key operations of each handshake.
 */

import { defineProtocol, encodeFrame } from "../lib/wire/mod.ts";
import {
  aesGcmEncrypt,
  hmacSha256,
  importAesGcmKey,
  importHmacKey,
  randomBytes,
  rsaOaepDecrypt,
  rsaOaepEncrypt,
  sequenceNonce,
} from "../lib/crypto/mod.ts";
import { generateRsaKeyPair, signRsa } from "../lib/pki/mod.ts";

const proto = defineProtocol("Bench", {
  chunk: { code: 0x01, label: "chunk", fields: { offset: "uint", data: "bytes" } },
});
const chunk = randomBytes(256 * 1024);
const encoded = proto.encode("chunk", { offset: 42, data: chunk });
const hmacKey = await importHmacKey(randomBytes(32));
const gcmKey = await importAesGcmKey(randomBytes(32));
const rsa = await generateRsaKeyPair(2048);
const spki = new Uint8Array(await crypto.subtle.exportKey("spki", rsa.publicKey));
const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", rsa.privateKey));
const sessionKey = randomBytes(32);
const oaep = await rsaOaepEncrypt(spki, sessionKey);
const x1 = await crypto.subtle.generateKey({ name: "X25519" }, false, [
  "deriveBits",
]) as CryptoKeyPair;
const x2 = await crypto.subtle.generateKey({ name: "X25519" }, false, [
  "deriveBits",
]) as CryptoKeyPair;

Deno.bench("codec: encode a 256 KiB chunk message", { group: "codec" }, () => {
  proto.encode("chunk", { offset: 42, data: chunk });
});
Deno.bench("codec: decode a 256 KiB chunk message", { group: "codec" }, () => {
  proto.decode(encoded);
});
Deno.bench("frame: encode a 256 KiB frame", { group: "codec" }, () => {
  encodeFrame(encoded, 1 << 20);
});
Deno.bench("HMAC-SHA256 over a 256 KiB chunk", { group: "record" }, async () => {
  await hmacSha256(hmacKey, chunk);
});
Deno.bench("AES-256-GCM seal of a 256 KiB chunk", { group: "record" }, async () => {
  await aesGcmEncrypt(gcmKey, sequenceNonce(7), chunk, new Uint8Array(8));
});
Deno.bench("RSA-2048 PKCS#1 v1.5 sign (step 4, bank proof)", { group: "handshake" }, async () => {
  await signRsa(rsa.privateKey, chunk.subarray(0, 64));
});
Deno.bench("RSA-OAEP-2048 decrypt the session key (step 5)", { group: "handshake" }, async () => {
  await rsaOaepDecrypt(pkcs8, oaep);
});
Deno.bench("X25519 shared secret (bank)", { group: "handshake" }, async () => {
  await crypto.subtle.deriveBits({ name: "X25519", public: x2.publicKey }, x1.privateKey, 256);
});
