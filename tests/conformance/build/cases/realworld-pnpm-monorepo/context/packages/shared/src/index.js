export const hello = () => "hello from shared";
