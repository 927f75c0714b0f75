// Checks hookline's request with the `jose` and `standardwebhooks`
// libraries: given a directory written by the `emits_interop_fixtures` or
// `emits_rotation_interop_fixtures` unit test or by the
// `a_real_delivery_is_captured_for_the_interop_checks` integration test (a
// request that a replica really delivered), it decrypts the body
// with keygen's PKCS#8 key, checks the protected header and the plaintext,
// checks that the RFC 7638 thumbprint of keygen's SPKI key is the `kid`, and
// that an altered ciphertext is refused; then verifies the signature with
// each secret alone (several during a signing-secret rotation) and refuses an
// altered body.
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
import { Webhook } from 'standardwebhooks';

const dir = process.argv[2];
const request = JSON.parse(await readFile(join(dir, 'request.json'), 'utf8'));
const bodyText = await readFile(join(dir, 'body.json'), 'utf8');
const jwe = JSON.parse(bodyText);
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

const headers = {
  'webhook-id': request['webhook-id'],
  'webhook-timestamp': request['webhook-timestamp'],
  'webhook-signature': request['webhook-signature'],
};
const secrets = request.secrets ?? [request.secret];
assert.equal(headers['webhook-signature'].split(' ').length, secrets.length);
const alteredBody = bodyText.replace('"tag":"', '"tag":"A');
assert.notEqual(alteredBody, bodyText);
for (const secret of secrets) {
  const webhook = new Webhook(secret);
  assert.deepEqual(webhook.verify(bodyText, headers), jwe);
  assert.throws(() => webhook.verify(alteredBody, headers));
}
console.log(
  `standardwebhooks: ${secrets.length} signature(s) verified with each secret alone, altered body refused`,
);
