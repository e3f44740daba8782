// The MANO interface's defaults, apart from the adapter so that reading them (the CLI's
// option defaults) does not load the AMQP client.

export const DEFAULT_EXCHANGE = 'son-kernel';
/** the SLM's own app_id, so clients that filter replies on it accept Drover's */
export const DEFAULT_APP_ID = 'son-plugin.ServiceLifecycleManager';
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
