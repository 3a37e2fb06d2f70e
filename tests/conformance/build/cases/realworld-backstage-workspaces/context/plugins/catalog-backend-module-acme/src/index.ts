export const acmeModule = (): void => {};
