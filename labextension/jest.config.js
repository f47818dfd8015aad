/** Unit tests of the panel's pure logic (graph model, layout, SSE parser). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/*.spec.ts'],
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        tsconfig: {
          module: 'commonjs',
          target: 'ES2019',
          lib: ['ES2019', 'DOM'],
          strict: true,
          esModuleInterop: true,
          skipLibCheck: true,
          types: ['jest']
        },
        diagnostics: { warnOnly: false }
      }
    ]
  }
};
