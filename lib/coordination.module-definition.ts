import { ConfigurableModuleBuilder } from '@nestjs/common';
import { COORDINATION_MODULE_OPTIONS } from './coordination.constants.js';
import type { CoordinationModuleOptions } from './coordination.options.js';

/** Options that shape the module definition rather than the etcd connection (builder "extras"). */
export interface CoordinationModuleExtras {
  /** Register the module globally (default true). */
  isGlobal?: boolean;
}

/**
 * The generated `forRoot`/`forRootAsync` of {@link CoordinationModule}, which
 * extends `ConfigurableModuleClass` and adds its providers and validation.
 *
 * NOTE: without `optionsInjectionToken` the builder makes a random token per
 * build; ours is public API (`COORDINATION_MODULE_OPTIONS`) and must be equal
 * across copies of the library, hence `Symbol.for`. `isGlobal` defaults to
 * true; the builder keeps extras out of the options value, so
 * `COORDINATION_MODULE_OPTIONS` never holds `isGlobal` for `forRoot`.
 */
export const {
  ConfigurableModuleClass: CoordinationConfigurableModule,
  MODULE_OPTIONS_TOKEN,
} = new ConfigurableModuleBuilder<CoordinationModuleOptions>({
  moduleName: 'Coordination',
  optionsInjectionToken: COORDINATION_MODULE_OPTIONS,
})
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createCoordinationOptions')
  .setExtras<CoordinationModuleExtras>({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal !== false,
  }))
  .build();
