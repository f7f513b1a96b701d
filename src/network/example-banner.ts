/**
 * What `npm start` prints (to stderr, after the service listens) when it runs on the shipped
 * EXAMPLE network: the URLs a newcomer wants and how to get a token. Only then: a real
 * deployment (NETWORK_FILE set) gets its JSON log lines and nothing else, whatever the terminal.
 */
export function exampleBanner(options: { publicUrl: string; isExample: boolean }): string | undefined {
  if (!options.isExample) return undefined;
  const url = options.publicUrl.replace(/\/+$/, '');
  return `
Running on the EXAMPLE network (for trying the service only):
  service:        ${url}/
  API reference:  ${url}/docs
  FHIR metadata:  ${url}/fhir/metadata
  a token:        TOKEN=$(npm run -s token -- st-olaf-ehr)     (every client id: npm run token -- --help)
  referring EHR:  npm run sandbox, in another terminal (the example referrer's synthetic EHR)
  end to end:     docs/walkthrough.md
`;
}
