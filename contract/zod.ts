// One zod instance, extended with `.openapi()` so the OpenAPI document is generated from these very schemas.
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

export { z };
