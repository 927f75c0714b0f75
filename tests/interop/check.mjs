// Checks hookline's JWE body with the `jose` library: given a directory
// written by the `emits_interop_fixtures` unit test or by the
// `a_real_delivery_is_captured_for_the_interop_checks` integration test (a
// request that a replica really delivered), it decrypts the body
// with keygen's PKCS#8 key, checks the protected header and the plaintext,
// checks that the RFC 7638 thumbprint of keygen's SPKI key is the `kid`, and
// that an altered ciphertext is refused.
//
// Usage: node check.mjs FIXTURE_DIR

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import {
  calculateJwkThumbprint,
  exportJWK,
  flattenedDecrypt,
  importPKCS8,
  importSPKI,
} from 'jose';

const dir = process.argv[2];
const request = JSON.parse(await readFile(join(dir, 'request.json'), 'utf8'));
const jwe = JSON.parse(await readFile(join(dir, 'body.json'), 'utf8'));
const privatePem = await readFile(join(dir, 'keys', 'private.pem'), 'utf8');
const publicPem = await readFile(join(dir, 'keys', 'public.pem'), 'utf8');

const options = {
  keyManagementAlgorithms: ['RSA-OAEP-256'],
  contentEncryptionAlgorithms: ['A256GCM'],
};
const privateKey = await importPKCS8(privatePem, 'RSA-OAEP-256');
const { plaintext, protectedHeader } = await flattenedDecrypt(jwe, privateKey, options);
assert.deepEqual(protectedHeader, { alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: request.kid });
assert.deepEqual(JSON.parse(new TextDecoder().decode(plaintext)), request.plaintext);

const publicKey = await importSPKI(publicPem, 'RSA-OAEP-256', { extractable: true });
assert.equal(await calculateJwkThumbprint(await exportJWK(publicKey)), request.kid);

const altered = { ...jwe, ciphertext: (jwe.ciphertext[0] === 'A' ? 'B' : 'A') + jwe.ciphertext.slice(1) };
await assert.rejects(flattenedDecrypt(altered, privateKey, options));

console.log('jose: JWE decrypted, header, plaintext and thumbprint match, altered ciphertext refused');
