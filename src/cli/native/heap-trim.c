/*
 * heap-trim: a Node addon with one function, trim(), which hands the C heap's free pages back
 * to the kernel (glibc's malloc_trim). A burst of work (a thousand processes starting) leaves
 * the C heap holding megabytes that are free but still resident; free() returns only the top of
 * the heap, malloc_trim(0) also the free pages inside it. The daemon calls it once the burst
 * is over (see daemon-heap.ts). Returns whether any memory was released.
 */
#include <malloc.h>
#include <node_api.h>

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != napi_ok) return NULL;
  return exports;
}
