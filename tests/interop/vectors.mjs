// Writes a JWE made by `jose` for hookline's test key, to stdout, with no
// `kid` in its header (jose does not add one), so that hookline's unit tests
// also cover a standard message that names no key
// (src/crypto/testdata/jose-vector.json). Regenerate with:
//
//   node vectors.mjs ../../src/crypto/testdata/rsa2048-spki.pem \
//       > ../../src/crypto/testdata/jose-vector.json

import { readFile } from 'node:fs/promises';

import { FlattenedEncrypt, importSPKI } from 'jose';

const plaintext = {
  id: 'evt_jose',
  type: 'order.created',
  timestamp: '2026-11-28T10:00:00Z',
  tenant: 'acme',
  data: { made_by: 'jose' },
};

const key = await importSPKI(await readFile(process.argv[2], 'utf8'), 'RSA-OAEP-256');
const jwe = await new FlattenedEncrypt(new TextEncoder().encode(JSON.stringify(plaintext)))
  .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' })
  .encrypt(key);
console.log(JSON.stringify({ library: 'jose', jwe, plaintext }, null, 2));
