// panva/oidc-provider (OpenID Certified) as an independent issuer for regogate's interop test.
// Usage: node server.mjs <port>. Prints "ready <issuer>" once listening on 127.0.0.1.
// Test-only configuration: fixed client secrets, in-memory storage, dev login screens.
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'urn:regogate:api';

const accounts = {
  alice: { email: 'alice@example.com', name: 'Alice Anders', groups: ['ml-team'], realm_access: { roles: ['ml-user'] } },
  erin: { email: 'erin@example.com', name: 'Erin Engel', groups: ['auditors'] },
};

async function signingKey(alg, kid, opts) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...opts });
  return { ...(await exportJWK(privateKey)), alg, kid, use: 'sig' };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'chat-ui',
      client_secret: 'chat-ui-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/cb'],
    },
    {
      // The gateway's auditor workspace (tests/workspace/test_interop_sign_in.py). Native:
      // a loopback redirect URI then accepts any port (RFC 8252 7.3), as the test gateway's
      // port is only known once it listens.
      client_id: 'regogate-workspace',
      client_secret: 'workspace-secret',
      application_type: 'native',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/audit/callback'],
    },
    {
      client_id: 'batch',
      client_secret: 'batch-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [await signingKey('RS256', 'op-rs256'), await signingKey('ES256', 'op-es256')] },
  cookies: { keys: ['interop-test-only'] },
  scopes: ['openid', 'email', 'profile', 'api:read'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== RESOURCE) throw new Error('unknown resource');
        return {
          scope: 'api:read',
          audience: 'regogate',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  // RFC 9068 leaves user attributes to the deployment; this is how oidc-provider adds them.
  extraTokenClaims: async (ctx, token) => {
    const account = token.accountId ? accounts[token.accountId] : undefined;
    return account ? { ...account } : undefined;
  },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, ...(accounts[sub] ?? {}) }),
  }),
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
