/** A complete opinion body (POST /consults/{taskId}/opinion) for tests and benchmarks: the API's documented example. */
export { EXAMPLE_OPINION } from '../../src/http/api-docs/examples.ts';
