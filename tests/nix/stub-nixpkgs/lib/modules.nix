# A small NixOS module system with nixpkgs' semantics for what gojinn's module uses: modules as
# functions or attribute sets with imports/options/config, mkIf, mkMerge, priorities (mkDefault,
# mkForce, option defaults), type checks, and errors that name the option, worded as nixpkgs
# words them ("A definition for option `x' is not of type ...", "The option `x' does not exist.",
# "The option `x' is used but not defined.").
{ lib }:
let
  inherit (builtins)
    attrNames
    concatMap
    filter
    foldl'
    functionArgs
    intersectAttrs
    isAttrs
    isBool
    isFunction
    isPath
    isString
    mapAttrs
    toJSON
    ;
  inherit (lib) showOption;

  isType = type: x: isAttrs x && x._type or null == type;
  isOption = isType "option";

  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  defaultPriority = 100;

  # A definition's value, with mkIf/mkMerge/mkOverride at its top expanded, as a list of
  # { priority, value }.
  expand =
    priority: value:
    if isType "if" value then
      if !isBool value.condition then
        throw "mkIf called with a non-Boolean condition"
      else if value.condition then
        expand priority value.content
      else
        [ ]
    else if isType "merge" value then
      concatMap (expand priority) value.contents
    else if isType "override" value then
      expand value.priority value.content
    else
      [ { inherit priority value; } ];

  # The definitions of the highest priority (lowest number) win; the others are dropped.
  highestPriority =
    defs:
    let
      best = foldl' (min: def: if def.priority < min then def.priority else min) 9999 defs;
    in
    filter (def: def.priority == best) defs;

  # The definitions found at `path` inside a module's config, looking through mkIf/mkMerge/
  # mkOverride at every level. Conditions are pushed down to the definitions, not evaluated here:
  # `config = mkIf cfg.enable { ... }` must not need `cfg.enable` to find `cfg.enable`.
  definitionsAt =
    path: value:
    if path == [ ] then
      [ value ]
    else if isType "if" value then
      map (content: {
        _type = "if";
        inherit (value) condition;
        inherit content;
      }) (definitionsAt path value.content)
    else if isType "merge" value then
      concatMap (definitionsAt path) value.contents
    else if isType "override" value then
      map (mkOverride value.priority) (definitionsAt path value.content)
    else if isAttrs value && value ? ${builtins.head path} then
      definitionsAt (builtins.tail path) value.${builtins.head path}
    else
      [ ];

  describe = value: if isAttrs value || isFunction value then builtins.typeOf value else toJSON value;

  # Merges the definitions of one option: type checks, then the type's merge.
  mergeDefinitions =
    loc: type: defs:
    let
      # An option's default is taken as it is: it is not looked at unless it wins.
      winners = highestPriority (
        concatMap (def: if def.isDefault or false then [ def ] else expand def.priority def.value) defs
      );
      bad = filter (def: !type.check def.value) winners;
    in
    if winners == [ ] then
      throw "The option `${showOption loc}' is used but not defined."
    else if bad != [ ] then
      throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition value: ${describe (builtins.head bad).value}"
    else
      type.merge loc winners;

  # Reads a module (path, function or attribute set) into { imports, options, config }.
  load =
    args: module:
    let
      value = if isPath module || isString module then import module else module;
      formals = if isFunction value then functionArgs value else { };
      called =
        if !isFunction value then
          value
        else if formals == { } then
          value args
        else
          value (intersectAttrs formals args);
      ignored = [
        "_file"
        "key"
        "meta"
      ];
      attrs = removeAttrs called ignored;
    in
    if attrs ? options || attrs ? config then
      {
        imports = attrs.imports or [ ];
        options = attrs.options or { };
        config = attrs.config or { };
      }
    else
      {
        imports = attrs.imports or [ ];
        options = { };
        config = removeAttrs attrs [ "imports" ];
      };

  collect = args: concatMap (module: let m = load args module; in [ m ] ++ collect args m.imports);

  mergeDeclarations =
    loc: a: b:
    a
    // mapAttrs (
      name: value:
      if !(a ? ${name}) then
        value
      else if isOption value || isOption a.${name} then
        throw "The option `${showOption (loc ++ [ name ])}' is declared twice."
      else
        mergeDeclarations (loc ++ [ name ]) a.${name} value
    ) b;

  # Paths defined in `config` that no option declares.
  undeclaredIn =
    loc: declarations: value:
    concatMap (
      def:
      if !isAttrs def.value then
        [ ]
      else
        concatMap (
          name:
          if !(declarations ? ${name}) then
            [ (showOption (loc ++ [ name ])) ]
          else if isOption declarations.${name} then
            [ ]
          else
            undeclaredIn (loc ++ [ name ]) declarations.${name} def.value.${name}
        ) (attrNames def.value)
    ) (expand defaultPriority value);

  evalModules =
    {
      modules,
      prefix ? [ ],
      args ? { },
    }:
    let
      allArgs = {
        inherit config options lib;
      }
      // args;
      loaded = collect allArgs modules;
      options = foldl' (mergeDeclarations prefix) { } (map (m: m.options) loaded);
      # Definitions are looked up relative to the modules' root; `prefix` only names options.
      evalOption =
        path: option:
        let
          defined = concatMap (
            module:
            map (value: {
              priority = defaultPriority;
              inherit value;
            }) (definitionsAt path module.config)
          ) loaded;
          default = lib.optional (option ? default) {
            priority = 1500;
            value = option.default;
            isDefault = true;
          };
          merged = mergeDefinitions (prefix ++ path) option.type (defined ++ default);
        in
        if option ? apply then option.apply merged else merged;
      evalTree =
        path: declarations:
        if isOption declarations then
          evalOption path declarations
        else
          mapAttrs (name: evalTree (path ++ [ name ])) declarations;
      config = evalTree [ ] options;
      undeclared = concatMap (m: undeclaredIn prefix options m.config) loaded;
    in
    {
      inherit config options undeclared;
    };
in
{
  inherit evalModules mergeDefinitions mkOverride;
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  mkOptionDefault = mkOverride 1500;
  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption =
    name:
    lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };
  mkPackageOption =
    pkgs: name:
    {
      default ? [ name ],
      ...
    }:
    lib.mkOption {
      type = lib.types.package;
      default = lib.attrByPath (lib.toList default) (throw "pkgs.${name} does not exist") pkgs;
      description = "The ${name} package to use.";
    };
  literalExpression = text: {
    _type = "literalExpression";
    inherit text;
  };
}
